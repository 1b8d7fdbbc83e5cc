#include "idem/core/store.h"

#include <unistd.h>

#include <cstdlib>

namespace idem {

Result<std::vector<ClaimOutcome>> Store::claim_many(std::span<const ClaimRequest> requests) {
  std::vector<ClaimOutcome> outcomes;
  outcomes.reserve(requests.size());
  for (const ClaimRequest& request : requests) {
    auto outcome = claim(request);
    if (!outcome) return std::move(outcome).error();
    outcomes.push_back(std::move(*outcome));
  }
  return outcomes;
}

std::string default_store_url() {
  // XDG first, so that a service account's state lives where its
  // administrator expects; /tmp only when there is no home at all.
  if (const char* state = std::getenv("XDG_STATE_HOME"); state != nullptr && state[0] == '/') {
    return std::string("sqlite://") + state + "/idem/idem.db";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] == '/') {
    return std::string("sqlite://") + home + "/.local/state/idem/idem.db";
  }
  return "sqlite:///tmp/idem-" + std::to_string(::getuid()) + "/idem.db";
}

}  // namespace idem
