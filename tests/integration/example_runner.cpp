// idem_example_runner --store sqlite|redis -- EXAMPLE [ARGS...]
//
// Runs an example program the way CI checks it: with no store argument (its
// default, a temporary SQLite file), or with the URL of a redis-server
// started here on a free loopback port in a temporary directory. Prints the
// example's output; exits 0 only when the example exited 0 and its output
// ends with "all checks passed". A missing redis-server is a skip (77),
// unless IDEM_REQUIRE_SERVERS=1.
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "support/server_process.h"

namespace {

constexpr int kSkip = 77;

int usage() {
  std::fprintf(stderr, "usage: idem_example_runner --store sqlite|redis -- EXAMPLE [ARGS...]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using idem::test::ServerProcess;
  std::string store;
  std::vector<std::string> command;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--store" && i + 1 < argc) {
      store = argv[++i];
    } else if (arg == "--") {
      command.assign(argv + i + 1, argv + argc);
      break;
    } else {
      return usage();
    }
  }
  if (command.empty() || (store != "sqlite" && store != "redis")) return usage();

  std::unique_ptr<idem::test::TempDir> dir;
  std::unique_ptr<ServerProcess> redis;
  if (store == "redis") {
    const std::string binary = idem::test::find_binary("redis-server", "IDEM_REDIS_SERVER");
    if (binary.empty()) {
      if (idem::test::servers_required()) {
        std::fprintf(stderr, "redis-server not found; IDEM_REQUIRE_SERVERS=1 makes this a failure\n");
        return 1;
      }
      std::printf("redis-server not found: skipped\n");
      return kSkip;
    }
    dir = std::make_unique<idem::test::TempDir>("example-redis");
    const int port = idem::test::free_port();
    idem::test::ServerSpec spec;
    spec.binary = binary;
    spec.args = {"--port", std::to_string(port), "--bind", "127.0.0.1", "--save",
                 "",       "--appendonly",       "no",     "--dir",     dir->path()};
    spec.work_dir = dir->path();
    spec.port = port;
    spec.name = "redis-server";
    std::string error;
    redis = ServerProcess::start(spec, &error);
    if (!redis) {
      std::fprintf(stderr, "cannot start redis-server: %s\n", error.c_str());
      return 1;
    }
    command.push_back("redis://127.0.0.1:" + std::to_string(port));
  }

  std::string output;
  const int status = idem::test::run_command(command, &output, std::chrono::seconds(50));
  std::fwrite(output.data(), 1, output.size(), stdout);
  if (status != 0) {
    std::printf("\nidem_example_runner: the example exited with status %d\n", status);
    return 1;
  }
  const std::string_view expected = "all checks passed\n";
  if (output.size() < expected.size() || output.compare(output.size() - expected.size(), expected.size(), expected)) {
    std::printf("\nidem_example_runner: the output does not end with \"all checks passed\"\n");
    return 1;
  }
  return 0;
}
