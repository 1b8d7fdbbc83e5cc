// Runs examples/6-nats-consumer against a nats-server of its own (the store
// is the example's default, a temporary SQLite file): the example exits 0
// and ends with "all checks passed".
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "integration/nats_support.h"

namespace {

class NatsExampleTest : public idem::test::NatsSuite {};

TEST_F(NatsExampleTest, ExampleSixPassesItsChecks) {
  ::setenv("NATS_URL", server().url().c_str(), 1);
  std::string output;
  const int status = idem::test::run_command({IDEM_EXAMPLE_PATH}, &output, std::chrono::seconds(60));
  EXPECT_EQ(status, 0) << output;
  const std::string expected = "all checks passed\n";
  ASSERT_GE(output.size(), expected.size()) << output;
  EXPECT_EQ(output.substr(output.size() - expected.size()), expected) << output;
}

}  // namespace
