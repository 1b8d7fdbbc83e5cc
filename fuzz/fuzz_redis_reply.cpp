// File: fuzz/fuzz_redis_reply.cpp
//
// libFuzzer target for the Redis store's reply side: the bytes a server (or
// anything listening on its port) sends go through the RESP reader, then
// each reply through the readers of the claim, get and owner replies
// (src/stores/redis/replies.h). Beyond "does not crash" it checks:
//   - a claim reply only acquires with the exact acquire shape, and with a
//     token and attempt that came from the reply;
//   - every rejection is a typed error: kInternal or kCorrupt for a bad shape
//     or record, or what a server error reply maps to.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "stores/redis/replies.h"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_redis_reply: %s\n", what);
  std::abort();
}

void check_error(const idem::Error& e, const redisReply* reply) {
  if (e.message().empty()) fail("an error without a message");
  if (reply->type == REDIS_REPLY_ERROR) return;  // mapped from the server's text
  if (e.code() != idem::ErrorCode::kInternal && e.code() != idem::ErrorCode::kCorrupt) {
    fail("a malformed reply is neither kInternal nor kCorrupt");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace rd = idem::redis_detail;
  rd::ReplyReader reader;
  // Feed in two pieces, as the network would.
  const std::size_t half = size / 2;
  if (!reader.feed(reinterpret_cast<const char*>(data), half)) return 0;
  if (!reader.feed(reinterpret_cast<const char*>(data) + half, size - half)) return 0;
  constexpr std::string_view kKey = "idempotency:events:fuzz";
  for (int i = 0; i < 64; ++i) {
    rd::ReplyPtr reply;
    if (!reader.next(reply)) return 0;  // not RESP: the connection is dropped
    if (!reply) return 0;
    const redisReply* r = reply.get();
    bool executed = true;
    auto claim = rd::read_claim_script_reply(kKey, r, executed);
    if (claim) {
      if (claim->acquired()) {
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 5 || rd::reply_text(r->element[0]) != "A") {
          fail("acquired from a reply that is not an acquire");
        }
        long long token = -1;
        if (!rd::reply_int(r->element[2], token) || static_cast<idem::Token>(token) != claim->token) {
          fail("the token does not come from the reply");
        }
      } else if (!claim->record) {
        fail("a claim not acquired without the record");
      }
    } else {
      check_error(claim.error(), r);
    }
    auto got = rd::read_get_reply(kKey, r, executed);
    if (!got) check_error(got.error(), r);
    auto code = rd::read_owner_reply(r, "complete", executed);
    if (!code) check_error(code.error(), r);
  }
  return 0;
}
