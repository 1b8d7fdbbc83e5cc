// File: cli/nats_commands.h
//
// `idem nats-worker` and `idem nats-publish` (built when idem::nats is).
#pragma once

#include "common.h"

namespace idem::cli {

void add_nats_worker_command(CLI::App& app, Action& action);
void add_nats_publish_command(CLI::App& app, Action& action);

}  // namespace idem::cli
