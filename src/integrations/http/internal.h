// Private helpers shared by the files of idem::http.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "idem/core/error.h"
#include "idem/integrations/http.h"

namespace idem::http::detail {

// The JSON Pointers of FingerprintOptions::ignore_json_fields, parsed once
// per route; kInvalidConfiguration naming the first bad one.
Result<std::vector<nlohmann::json::json_pointer>> parse_pointers(const std::vector<std::string>& pointers);

// fingerprint() with the pointers already parsed.
std::string fingerprint(const httplib::Request& request, const FingerprintOptions& options,
                        const std::vector<nlohmann::json::json_pointer>& ignored);

}  // namespace idem::http::detail
