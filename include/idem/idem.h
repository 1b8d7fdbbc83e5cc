/// @file idem/idem.h
/// @brief The whole core API in one include.
///
/// The whole core API in one include. Store headers (idem/stores/*.h) are
/// separate so that a program links only the backends it uses.
#pragma once

#include "idem/core/checker.h"    // IWYU pragma: export
#include "idem/core/clock.h"      // IWYU pragma: export
#include "idem/core/envelope.h"   // IWYU pragma: export
#include "idem/core/error.h"      // IWYU pragma: export
#include "idem/core/handler.h"    // IWYU pragma: export
#include "idem/core/key.h"        // IWYU pragma: export
#include "idem/core/limits.h"     // IWYU pragma: export
#include "idem/core/observer.h"   // IWYU pragma: export
#include "idem/core/processor.h"  // IWYU pragma: export
#include "idem/core/record.h"     // IWYU pragma: export
#include "idem/core/store.h"      // IWYU pragma: export
