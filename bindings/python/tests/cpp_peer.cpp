// idem_py_peer: the C++ side of the cross-language tests. It runs the C++
// wrapper (idem::idempotent_event_handler) over the given keys from several
// threads, on the same store as a Python process, and appends
// "cpp <key>\n" to the log file each time its handler runs (one write(2)
// with O_APPEND, so lines of both processes never interleave). When every
// key has an answer it prints "<key>\t<result JSON>" for each key.
//
//   idem_py_peer --store URL --keys k1,k2,... --log runs.log [--scope S]
//                [--threads N] [--handler-ms M] [--prefix P]
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "idem/idem.h"

namespace {

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    if (comma > start) out.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> args;
  for (int i = 1; i + 1 < argc; i += 2) args[argv[i]] = argv[i + 1];
  if (!args.contains("--store") || !args.contains("--keys") || !args.contains("--log")) {
    std::fprintf(stderr,
                 "usage: idem_py_peer --store URL --keys k1,k2 --log FILE [--scope S] [--threads N] "
                 "[--handler-ms M] [--prefix P]\n");
    return 2;
  }
  const std::vector<std::string> keys = split(args["--keys"]);
  const int threads = args.contains("--threads") ? std::atoi(args["--threads"].c_str()) : 4;
  const int handler_ms = args.contains("--handler-ms") ? std::atoi(args["--handler-ms"].c_str()) : 0;
  const int log_fd = ::open(args["--log"].c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (log_fd < 0) {
    std::perror("open log");
    return 2;
  }

  idem::CheckerOptions options;
  if (args.contains("--prefix")) options.key.prefix = args["--prefix"];
  auto checker = idem::IdempotencyChecker::from_url(args["--store"], options);
  if (!checker) {
    std::fprintf(stderr, "store: %s\n", checker.error().to_string().c_str());
    return 2;
  }
  idem::HandlerOptions handler_options{.processor = {}, .checker = *checker};
  if (args.contains("--scope")) handler_options.processor.scope = args["--scope"];
  handler_options.processor.wait_for_in_progress = std::chrono::milliseconds(0);

  auto handler = idem::idempotent_event_handler(
      [&](const idem::Envelope& e) {
        const std::string line = "cpp " + e.event_id + "\n";
        if (::write(log_fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::abort();
        if (handler_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(handler_ms));
        return std::string(R"({"by":"cpp","key":")") + e.event_id + "\"}";
      },
      handler_options);

  std::mutex mutex;
  std::map<std::string, std::string> answers;
  std::atomic<int> errors{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      // Each thread delivers every key, starting at a different place;
      // in-progress duplicates are redelivered later, as a broker would.
      std::deque<std::string> queue;
      for (std::size_t i = 0; i < keys.size(); ++i)
        queue.push_back(keys[(i + static_cast<std::size_t>(t) * 7) % keys.size()]);
      while (!queue.empty()) {
        std::string key = queue.front();
        queue.pop_front();
        idem::Envelope envelope;
        envelope.event_id = key;
        envelope.event_type = "cross.language";
        if (!envelope.set_payload_json(R"({"key":")" + key + "\"}")) std::abort();
        try {
          auto result = handler(envelope);
          std::lock_guard lock(mutex);
          answers[key] = result.value_or("null");
        } catch (const idem::EventInProgressError&) {
          queue.push_back(key);
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
        } catch (const std::exception& e) {
          std::fprintf(stderr, "%s: %s\n", key.c_str(), e.what());
          ++errors;
        }
      }
    });
  }
  for (auto& thread : pool) thread.join();
  ::close(log_fd);
  for (const auto& [key, result] : answers) std::printf("%s\t%s\n", key.c_str(), result.c_str());
  return errors.load() == 0 ? 0 : 1;
}
