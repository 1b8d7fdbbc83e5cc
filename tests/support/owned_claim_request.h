// File: tests/support/owned_claim_request.h
//
// OwnedClaimRequest is a ClaimRequest together with the strings it views, for
// test stores that must keep a request past the call that gave it to them
// (the store API lends requests only until the call returns).
#pragma once

#include <string>

#include "idem/core/store.h"

namespace idem::test {

struct OwnedClaimRequest {
  explicit OwnedClaimRequest(const ClaimRequest& r)
      : key(r.key), event_id(r.event_id), event_type(r.event_type), fingerprint(r.fingerprint), request(r) {
    request.key = key;
    request.event_id = event_id;
    request.event_type = event_type;
    request.fingerprint = fingerprint;
  }
  OwnedClaimRequest(const OwnedClaimRequest& other) : OwnedClaimRequest(other.request) {}
  OwnedClaimRequest& operator=(const OwnedClaimRequest&) = delete;

  std::string key, event_id, event_type, fingerprint;
  ClaimRequest request;  // views the strings above
};

}  // namespace idem::test
