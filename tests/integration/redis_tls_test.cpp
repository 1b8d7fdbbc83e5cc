// RedisStore over TLS (rediss://) against redis-server started with
// --tls-port and certificates this test generates (CA, server, client):
// the whole contract suite, plus certificate verification failures.
#include <gtest/gtest.h>

#include "conformance/async_as_sync.h"
#include "conformance/store_contract.h"
#include "idem/stores/redis.h"
#include "integration/redis_support.h"

namespace {

using idem::test::RedisServer;

struct TlsWorld {
  std::unique_ptr<idem::test::TempDir> dir;
  idem::test::RedisTlsFiles files;
  std::unique_ptr<RedisServer> server;
};
TlsWorld* g_world = nullptr;

class TlsEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (idem::test::redis_server_binary().empty()) IDEM_SKIP_OR_FAIL("redis-server not found (set IDEM_REDIS_SERVER)");
    world_.dir = std::make_unique<idem::test::TempDir>("redis-tls");
    std::string err;
    auto files = idem::test::make_tls_files(world_.dir->path(), &err);
    ASSERT_TRUE(files) << err;
    world_.files = *files;
    world_.server = RedisServer::start({}, &err, &world_.files, /*tls_auth_clients=*/true);
    ASSERT_TRUE(world_.server) << err;
    g_world = &world_;
  }
  void TearDown() override {
    g_world = nullptr;
    world_.server.reset();
  }

 private:
  TlsWorld world_;
};

[[maybe_unused]] ::testing::Environment* const g_env = ::testing::AddGlobalTestEnvironment(new TlsEnvironment);

std::string tls_url(const std::string& extra = "") {
  const auto& f = g_world->files;
  return "rediss://127.0.0.1:" + std::to_string(g_world->server->port()) + "/0?ca=" + f.ca_cert +
         "&cert=" + f.client_cert + "&key=" + f.client_key + extra;
}

StoreFixture tls_fixture() {
  return StoreFixture{"RedisTls", [] {
                        g_world->server->command({"FLUSHALL"});
                        auto store = idem::RedisStore::open(tls_url());
                        EXPECT_TRUE(store.ok()) << store.error().to_string();
                        return store.ok() ? *store : nullptr;
                      }};
}

idem::ClaimRequest claim_req(std::string_view key) {
  idem::ClaimRequest r;
  r.key = key;
  r.event_id = "e";
  return r;
}

TEST(RedisTls, ClaimOverTlsWithClientCertificate) {
  auto store = idem::RedisStore::open(tls_url());
  ASSERT_TRUE(store.ok()) << store.error().to_string();
  auto out = (*store)->claim(claim_req("idempotency:events:tls-1"));
  ASSERT_TRUE(out.ok()) << out.error().to_string();
  EXPECT_TRUE(out->acquired());
  // Really TLS: the plain protocol on this port gets nowhere.
  auto plain = idem::RedisStore::open("redis://127.0.0.1:" + std::to_string(g_world->server->port()) +
                                      "?connect_timeout_ms=500&command_timeout_ms=500&retries=1");
  ASSERT_TRUE(plain.ok());
  idem::Status st = (*plain)->ping();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message().find("expect TLS"), std::string::npos) << st.error().to_string();
}

TEST(RedisTls, ServerCertificateFromAnotherCaIsRejected) {
  idem::test::TempDir other("redis-tls-other");
  std::string err;
  auto files = idem::test::make_tls_files(other.path(), &err);
  ASSERT_TRUE(files) << err;
  const auto& f = g_world->files;
  auto store =
      idem::RedisStore::open("rediss://127.0.0.1:" + std::to_string(g_world->server->port()) + "?ca=" + files->ca_cert +
                             "&cert=" + f.client_cert + "&key=" + f.client_key + "&retries=1");
  ASSERT_TRUE(store.ok()) << store.error().to_string();
  idem::Status st = (*store)->ping();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code(), idem::ErrorCode::kUnavailable);
  EXPECT_NE(st.error().message().find("certificate"), std::string::npos) << st.error().message();
}

TEST(RedisTls, HostNameMismatchIsRejectedUnlessVerificationIsOff) {
  auto store = idem::RedisStore::open(tls_url("&sni=not-this-host.example&retries=1"));
  ASSERT_TRUE(store.ok());
  idem::Status st = (*store)->ping();
  ASSERT_FALSE(st.ok()) << "a certificate for localhost/127.0.0.1 must not pass for another name";
  EXPECT_EQ(st.error().code(), idem::ErrorCode::kUnavailable);

  // SNI "localhost" is in the certificate.
  store = idem::RedisStore::open(tls_url("&sni=localhost"));
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE((*store)->ping().ok());

  // verify=0 accepts anything (tests only), even without a CA file.
  const auto& f = g_world->files;
  store = idem::RedisStore::open("rediss://127.0.0.1:" + std::to_string(g_world->server->port()) +
                                 "?verify=0&sni=whatever.example&cert=" + f.client_cert + "&key=" + f.client_key);
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE((*store)->ping().ok());
}

TEST(RedisTls, MissingClientCertificateIsRejectedByTheServer) {
  auto store = idem::RedisStore::open("rediss://127.0.0.1:" + std::to_string(g_world->server->port()) +
                                      "?ca=" + g_world->files.ca_cert + "&retries=1");
  ASSERT_TRUE(store.ok());
  idem::Status st = (*store)->ping();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code(), idem::ErrorCode::kUnavailable) << st.error().to_string();
}

TEST(RedisTls, UnreadableCaFileFailsAtCreate) {
  auto store = idem::RedisStore::open("rediss://127.0.0.1:1?ca=/nonexistent/ca.pem");
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.error().code(), idem::ErrorCode::kInvalidConfiguration);
}

TEST(RedisTls, LargeValuesCrossManyTlsRecords) {
  auto store = idem::RedisStore::open(tls_url());
  ASSERT_TRUE(store.ok());
  const std::string key = "idempotency:events:tls-big";
  auto out = (*store)->claim(claim_req(key)).value();
  const std::string big(3 << 20, 'z');  // 3 MiB: hundreds of TLS records each way
  ASSERT_TRUE((*store)->complete({.key = key, .token = out.token, .result = big}).ok());
  auto rec = (*store)->get(key).value();
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->result, big);
}

}  // namespace

INSTANTIATE_STORE_CONTRACT(RedisTls, tls_fixture());

// The same suite through the asynchronous API (each call is *_async + wait).
StoreFixture tls_fixture_async() {
  StoreFixture sync = tls_fixture();
  return StoreFixture{sync.name + "Async", [make = sync.make] { return idem::conformance::async_as_sync(make()); }};
}
INSTANTIATE_STORE_CONTRACT(RedisTlsAsync, tls_fixture_async());
