// `idem bench`: the load generator behind the published figures. It drives
// the library's real API (the guard, its asynchronous form, the wrapper, or
// claim_many through the checker for --batch), never raw store calls, and
// checks the promise itself: every unique key's handler ran exactly once.
//
// It is safe on a shared store: it touches only its own keys (a scope of its
// own per run), measures bytes per record on a sample of them, and never
// walks the rest of the store.
#include <time.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common.h"
#include "counting_store.h"
#include "idem/core/checker.h"
#include "idem/core/handler.h"
#include "idem/core/metrics.h"
#include "idem/core/processor.h"
#include "idem/core/store_metrics.h"
#include "idem/core/tracing.h"
#include "metrics_listen.h"

namespace idem::cli {
namespace {

using SteadyClock = std::chrono::steady_clock;

struct BenchOptions {
  CommonOptions common;
  std::size_t events = 10'000;
  std::size_t concurrency = 8;
  double duplicate_ratio = 0.2;
  std::size_t batch = 1;
  std::size_t result_bytes = 64;
  std::string api = "guard";
  std::size_t inflight = 64;
  std::uint64_t seed = 42;
  bool keep = false;
  std::string metrics_out;
  std::string metrics_listen;
  std::string metrics_linger = "0";
  std::string snapshot_interval = "10s";
};

struct Tally {
  std::atomic<std::uint64_t> executions{0};
  std::atomic<std::uint64_t> replayed{0};
  std::atomic<std::uint64_t> in_progress{0};
  std::atomic<std::uint64_t> other_duplicates{0};  // terminal failures, mismatches
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::size_t> done{0};
  std::mutex first_error_mutex;
  std::string first_error;

  void error(const std::string& message) {
    if (errors.fetch_add(1, std::memory_order_relaxed) == 0) {
      std::lock_guard lock(first_error_mutex);
      first_error = message;
    }
  }
};

// The delivery sequence: positions 0..N-1 name a unique key each; a fraction
// R are re-deliveries of a key delivered earlier (uniformly chosen), as an
// at-least-once broker would produce.
std::vector<std::uint32_t> make_sequence(std::size_t events, double ratio, std::uint64_t seed, std::size_t& unique) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  std::vector<std::uint32_t> sequence(events);
  unique = 0;
  for (std::size_t i = 0; i < events; ++i) {
    if (unique > 0 && coin(rng) < ratio) {
      std::uniform_int_distribution<std::size_t> pick(0, unique - 1);
      sequence[i] = static_cast<std::uint32_t>(pick(rng));
    } else {
      sequence[i] = static_cast<std::uint32_t>(unique++);
    }
  }
  return sequence;
}

std::int64_t percentile(const std::vector<std::int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  // Nearest rank: the smallest value with at least p of the samples at or below it.
  auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

std::string run_id() {
  std::random_device device;
  std::array<char, 17> buffer{};
  std::snprintf(buffer.data(), buffer.size(), "%08x%08x", device(), device());
  return buffer.data();
}

std::int64_t thread_cpu_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::string format_count(double value) {
  std::array<char, 32> buffer{};
  std::snprintf(buffer.data(), buffer.size(), "%.0f", value);
  // Built forwards (not with insert(), which trips GCC 12's -Wrestrict at -O3).
  const std::string_view digits = buffer.data();
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string format_us(std::int64_t ns) {
  std::array<char, 32> buffer{};
  if (ns < 1'000'000) {
    std::snprintf(buffer.data(), buffer.size(), "%.1f us", static_cast<double>(ns) / 1e3);
  } else {
    std::snprintf(buffer.data(), buffer.size(), "%.2f ms", static_cast<double>(ns) / 1e6);
  }
  return buffer.data();
}

int run_bench(const BenchOptions& options) {
  if (options.api != "guard" && options.api != "wrapper" && options.api != "async") {
    throw CliError(kExitUsage, "invalid --api '" + options.api + "' (guard, async or wrapper)");
  }
  if (options.api == "async" && options.batch > 1) {
    throw CliError(kExitUsage, "--api async and --batch do not combine (--batch drives claim_many)");
  }
  if (options.events > 0xffff'ffffU) throw CliError(kExitUsage, "--events must be below 2^32");
  const std::string url = effective_store_url(options.common);
  auto opened = open_store(url);
  if (!opened) throw CliError(kExitError, "cannot open store " + redact_url(url) + ": " + opened.error().to_string());
  // Store calls are counted by a decorator, not an observer: with no
  // observer the guard runs its real, unobserved fast path.
  auto counted = std::make_shared<CountingStore>(std::move(*opened));
  std::shared_ptr<Store> store = counted;
  // The first error must be the real one: a bad address, a wrong CA or a
  // refused password, not the "circuit breaker open" that a run of failed
  // calls would trip later.
  if (Status reachable = store->ping(); !reachable) {
    throw CliError(kExitError, "store " + redact_url(url) + " does not answer: " + reachable.error().to_string());
  }

  std::shared_ptr<MetricsRegistry> metrics;
  CheckerOptions checker_options;
  checker_options.key.scope = "idem-bench-" + run_id();
  if (!options.metrics_out.empty() || !options.metrics_listen.empty()) {
    metrics = std::make_shared<MetricsRegistry>(MetricsOptions{.store = std::string(store->kind())});
    checker_options.observer = metrics;
  }
  auto checker = std::make_shared<IdempotencyChecker>(store, checker_options);

  // --metrics-listen: a live /metrics for the whole run (and --metrics-linger
  // after it), with the store-level gauges a dashboard shows next to the
  // counters. The listener is up before the first event, so a scrape can
  // see every counter start at zero.
  std::unique_ptr<MetricsListener> listener;
  std::unique_ptr<StoreSnapshotPoller> poller;
  if (!options.metrics_listen.empty()) {
    if (parse_duration(options.snapshot_interval).count() <= 0) {
      throw CliError(kExitUsage, "--snapshot-interval must be positive");
    }
    listener = std::make_unique<MetricsListener>(metrics, options.metrics_listen);
    poller = std::make_unique<StoreSnapshotPoller>(
        store, metrics, StoreSnapshotPollerOptions{.interval = parse_duration(options.snapshot_interval)});
  }

  std::size_t unique = 0;
  const std::vector<std::uint32_t> sequence =
      make_sequence(options.events, options.duplicate_ratio, options.seed, unique);
  std::vector<Envelope> envelopes(unique);
  for (std::size_t k = 0; k < unique; ++k) {
    envelopes[k].event_id = "e" + std::to_string(k);
    envelopes[k].event_type = "bench";
    envelopes[k].payload = "{\"n\":" + std::to_string(k) + "}";
  }
  const std::string result(std::max<std::size_t>(options.result_bytes, 2), 'x');
  const std::string json_result = "\"" + result.substr(0, result.size() - 2) + "\"";  // a JSON string of K bytes

  Tally tally;
  std::vector<std::atomic<std::uint32_t>> runs_per_key(unique);
  std::vector<std::int64_t> latency_ns(options.events, 0);
  std::atomic<std::size_t> next{0};

  IdempotentEventProcessor processor(checker);
  const bool async = options.api == "async";
  thread_local bool executed_here = false;
  auto wrapped = idempotent_event_handler(
      [&](const Envelope& envelope) {
        executed_here = true;
        tally.executions.fetch_add(1, std::memory_order_relaxed);
        runs_per_key[std::stoul(envelope.event_id.substr(1))].fetch_add(1, std::memory_order_relaxed);
        return json_result;
      },
      HandlerOptions{.checker = checker});

  // --api async: the handler finishes at once; what is measured is the
  // guard's asynchronous path and the store's pipelining.
  const IdempotentEventProcessor::AsyncHandler async_handler = [&](const Envelope& envelope, ProcessingContext&,
                                                                   IdempotentEventProcessor::Completion completion) {
    tally.executions.fetch_add(1, std::memory_order_relaxed);
    runs_per_key[std::stoul(envelope.event_id.substr(1))].fetch_add(1, std::memory_order_relaxed);
    completion.succeed(json_result);
  };
  auto count_async = [&](std::size_t i, const IdempotentEventProcessor::AsyncOutcome& outcome,
                         SteadyClock::time_point start) {
    if (outcome.exception) {
      try {
        std::rethrow_exception(outcome.exception);
      } catch (const std::exception& e) {
        tally.error(e.what());
      } catch (...) {
        tally.error("unknown exception");
      }
    } else if (outcome.status == ClaimStatus::kCompleted) {
      tally.replayed.fetch_add(1, std::memory_order_relaxed);
    } else if (outcome.status == ClaimStatus::kInProgress) {
      tally.in_progress.fetch_add(1, std::memory_order_relaxed);
    } else if (outcome.status != ClaimStatus::kAcquired) {
      tally.other_duplicates.fetch_add(1, std::memory_order_relaxed);
    }
    latency_ns[i] = std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now() - start).count();
    tally.done.fetch_add(1, std::memory_order_relaxed);
  };

  // One thread keeps up to --inflight events in flight: it starts events
  // until the window is full, then sleeps until the completions (on the
  // store's I/O threads) have drained it to three quarters, so that it is
  // woken once per batch of completions rather than once per event. Stores
  // that answer inline (memory, SQLite) finish each event inside
  // process_async(), so the window never holds more than one.
  auto run_async = [&] {
    struct Window {
      std::mutex mutex;
      std::condition_variable drained;
      std::size_t in_flight = 0;
      bool waiting = false;
    };
    auto window = std::make_shared<Window>();
    const std::size_t limit = std::max<std::size_t>(options.inflight, 1);
    const std::size_t low_water = limit - std::max<std::size_t>(limit / 4, 1);
    while (true) {
      const std::size_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= options.events) break;
      {
        std::unique_lock lock(window->mutex);
        if (window->in_flight >= limit) {
          window->waiting = true;
          window->drained.wait(lock, [&] { return window->in_flight <= low_water; });
          window->waiting = false;
        }
        ++window->in_flight;
      }
      const auto start = SteadyClock::now();
      processor.process_async(envelopes[sequence[i]], async_handler,
                              [&count_async, window, low_water, i, start](IdempotentEventProcessor::AsyncOutcome o) {
                                count_async(i, o, start);
                                bool wake = false;
                                {
                                  std::lock_guard lock(window->mutex);
                                  --window->in_flight;
                                  wake = window->waiting && window->in_flight <= low_water;
                                }
                                if (wake) window->drained.notify_one();
                              });
    }
    std::unique_lock lock(window->mutex);
    window->waiting = true;
    window->drained.wait(lock, [&] { return window->in_flight == 0; });
  };

  auto run_one = [&](std::size_t i) {
    const std::uint32_t k = sequence[i];
    const Envelope& envelope = envelopes[k];
    const auto start = SteadyClock::now();
    try {
      if (options.api == "guard") {
        ProcessingContext ctx = processor.process(envelope);
        if (ctx.should_process()) {
          tally.executions.fetch_add(1, std::memory_order_relaxed);
          runs_per_key[k].fetch_add(1, std::memory_order_relaxed);
          ctx.mark_completed(json_result);
        } else if (ctx.status() == ClaimStatus::kCompleted) {
          tally.replayed.fetch_add(1, std::memory_order_relaxed);
        } else if (ctx.status() == ClaimStatus::kInProgress) {
          tally.in_progress.fetch_add(1, std::memory_order_relaxed);
        } else {
          tally.other_duplicates.fetch_add(1, std::memory_order_relaxed);
        }
      } else {
        executed_here = false;
        (void)wrapped(envelope);
        if (!executed_here) tally.replayed.fetch_add(1, std::memory_order_relaxed);
      }
    } catch (const EventInProgressError&) {
      // The wrapper waited for the original and it was still running.
      tally.in_progress.fetch_add(1, std::memory_order_relaxed);
    } catch (const std::exception& e) {
      tally.error(e.what());
    }
    latency_ns[i] = std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now() - start).count();
    tally.done.fetch_add(1, std::memory_order_relaxed);
  };

  // --batch: one claim_many round trip per B deliveries (the manual API),
  // then a complete() per acquired claim.
  auto run_batch = [&](std::size_t first, std::size_t count) {
    const auto start = SteadyClock::now();
    std::vector<Envelope> batch;
    batch.reserve(count);
    for (std::size_t i = first; i < first + count; ++i) batch.push_back(envelopes[sequence[i]]);
    auto claims = checker->claim_many(batch);
    if (!claims) {
      for (std::size_t i = 0; i < count; ++i) tally.error(claims.error().to_string());
    } else {
      for (std::size_t j = 0; j < count; ++j) {
        const Claim& claim = (*claims)[j];
        const std::uint32_t k = sequence[first + j];
        switch (claim.outcome.status) {
          case ClaimStatus::kAcquired: {
            tally.executions.fetch_add(1, std::memory_order_relaxed);
            runs_per_key[k].fetch_add(1, std::memory_order_relaxed);
            Status status = checker->complete(claim.key, claim.outcome.token, json_result);
            if (!status) tally.error(status.error().to_string());
            break;
          }
          case ClaimStatus::kCompleted: tally.replayed.fetch_add(1, std::memory_order_relaxed); break;
          case ClaimStatus::kInProgress: tally.in_progress.fetch_add(1, std::memory_order_relaxed); break;
          default: tally.other_duplicates.fetch_add(1, std::memory_order_relaxed); break;
        }
        latency_ns[first + j] =
            std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now() - start).count();
      }
    }
    tally.done.fetch_add(count, std::memory_order_relaxed);
  };

  const std::size_t batch = std::max<std::size_t>(options.batch, 1);
  // CPU time of the caller threads: on a machine shared with other work the
  // wall-clock rate says more about the neighbours than about Idem.
  std::atomic<std::int64_t> worker_cpu_ns{0};
  const auto started = SteadyClock::now();
  std::vector<std::thread> workers;
  for (std::size_t t = 0; t < std::max<std::size_t>(options.concurrency, 1); ++t) {
    workers.emplace_back([&] {
      const std::int64_t cpu_start = thread_cpu_ns();
      if (async) {
        run_async();
      } else {
        while (true) {
          const std::size_t first = next.fetch_add(batch, std::memory_order_relaxed);
          if (first >= options.events) break;
          const std::size_t count = std::min(batch, options.events - first);
          if (batch == 1) {
            run_one(first);
          } else {
            run_batch(first, count);
          }
        }
      }
      worker_cpu_ns.fetch_add(thread_cpu_ns() - cpu_start, std::memory_order_relaxed);
    });
  }

  // Progress bar on a terminal, redrawn a few times a second.
  ProgressLine progress;
  std::atomic<bool> finished{false};
  std::thread reporter;
  if (progress.enabled()) {
    reporter = std::thread([&] {
      while (!finished.load(std::memory_order_acquire)) {
        const std::size_t done = tally.done.load(std::memory_order_relaxed);
        const double fraction =
            options.events == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(options.events);
        const auto width = static_cast<std::size_t>(fraction * 30.0);
        const double seconds = std::chrono::duration<double>(SteadyClock::now() - started).count();
        std::array<char, 64> text{};
        std::snprintf(text.data(), text.size(), "] %3.0f%% %zu/%zu events  ", fraction * 100.0, done, options.events);
        progress.show("[" + std::string(width, '#') + std::string(30 - std::min<std::size_t>(width, 30), ' ') +
                      text.data() + format_count(seconds > 0 ? static_cast<double>(done) / seconds : 0) + " ev/s");
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
    });
  }
  for (auto& worker : workers) worker.join();
  const double elapsed = std::chrono::duration<double>(SteadyClock::now() - started).count();
  finished.store(true, std::memory_order_release);
  if (reporter.joinable()) reporter.join();
  progress.clear();

  const std::uint64_t store_calls = counted->total();
  // Bytes per record from a sample of this run's own records, one lookup
  // each: on a shared store a before/after total would walk (or be skewed
  // by) everybody else's records.
  std::optional<double> bytes_per_record;
  std::string bytes_error;
  {
    constexpr std::size_t kSamples = 100;
    const std::size_t samples = std::min(unique, kSamples);
    std::uint64_t total = 0;
    std::size_t measured = 0;
    for (std::size_t j = 0; j < samples; ++j) {
      auto key = checker->key_for(envelopes[j * unique / samples]);
      if (!key) continue;
      auto bytes = store->approximate_record_bytes(*key);
      if (!bytes) {
        bytes_error = bytes.error().to_string();
        break;
      }
      if (*bytes) {
        total += **bytes;
        ++measured;
      }
    }
    if (measured > 0) bytes_per_record = static_cast<double>(total) / static_cast<double>(measured);
  }
  if (!options.metrics_out.empty()) {
    std::ofstream out(options.metrics_out);
    out << metrics->render();
    if (!out) throw CliError(kExitError, "cannot write --metrics-out " + options.metrics_out);
  }

  std::uint64_t keys_run_twice = 0;
  std::uint64_t keys_never_run = 0;
  for (const auto& runs : runs_per_key) {
    const auto n = runs.load(std::memory_order_relaxed);
    if (n == 0) ++keys_never_run;
    if (n > 1) ++keys_run_twice;
  }

  std::vector<std::int64_t> sorted = latency_ns;
  std::sort(sorted.begin(), sorted.end());
  const std::int64_t p50 = percentile(sorted, 0.50);
  const std::int64_t p99 = percentile(sorted, 0.99);
  const std::int64_t p999 = percentile(sorted, 0.999);
  const std::int64_t max = sorted.empty() ? 0 : sorted.back();
  const double events_per_s = elapsed > 0 ? static_cast<double>(options.events) / elapsed : 0;
  const double cpu_us_per_event =
      options.events > 0 ? static_cast<double>(worker_cpu_ns.load()) / 1e3 / static_cast<double>(options.events) : 0;
  const std::uint64_t executions = tally.executions.load();
  const bool once = executions == unique && keys_run_twice == 0 && keys_never_run == 0;
  const std::uint64_t errors = tally.errors.load();

  // Remove what the run wrote (not timed), unless asked to keep it. A
  // failed removal is reported: records left behind must not go unnoticed.
  std::uint64_t cleanup_failures = 0;
  std::string cleanup_error;
  if (!options.keep) {
    for (const Envelope& envelope : envelopes) {
      auto key = checker->key_for(envelope);
      if (!key) continue;
      if (auto removed = store->remove(*key); !removed && cleanup_failures++ == 0) {
        cleanup_error = removed.error().to_string();
      }
    }
  }

  std::string api = options.api;
  if (batch > 1) api = "checker.claim_many";
  if (async) api = "guard.process_async";
  if (options.common.json) {
    nlohmann::json out{
        {"store", redact_url(url)},
        {"store_kind", std::string(store->kind())},
        {"api", api},
        {"events", options.events},
        {"unique_keys", unique},
        {"redeliveries", options.events - unique},
        {"concurrency", options.concurrency},
        {"batch", batch},
        {"duplicate_ratio", options.duplicate_ratio},
        {"result_bytes", options.result_bytes},
        {"elapsed_s", elapsed},
        {"events_per_s", events_per_s},
        {"caller_cpu_us_per_event", cpu_us_per_event},
        {"latency_us",
         {{"p50", static_cast<double>(p50) / 1e3},
          {"p99", static_cast<double>(p99) / 1e3},
          {"p999", static_cast<double>(p999) / 1e3},
          {"max", static_cast<double>(max) / 1e3}}},
        {"handler_executions", executions},
        {"keys_run_more_than_once", keys_run_twice},
        {"keys_never_run", keys_never_run},
        {"executions_equal_unique_keys", once},
        {"duplicates_replayed", tally.replayed.load()},
        {"duplicates_in_progress", tally.in_progress.load()},
        {"duplicates_other", tally.other_duplicates.load()},
        {"errors", errors},
        {"first_error", tally.first_error},
        {"store_calls", store_calls},
        {"store_calls_per_event",
         options.events > 0 ? static_cast<double>(store_calls) / static_cast<double>(options.events) : 0.0},
        {"bytes_per_record", bytes_per_record ? nlohmann::json(*bytes_per_record) : nlohmann::json(nullptr)},
        {"bytes_per_record_error", bytes_error},
        {"inflight", async ? nlohmann::json(options.inflight) : nlohmann::json(nullptr)},
        {"cleanup_failures", cleanup_failures},
        {"cleanup_first_error", cleanup_error},
    };
    std::cout << out.dump() << '\n';
  } else {
    std::string shape;
    if (batch > 1) shape = ", batch " + std::to_string(batch);
    if (async) shape = ", " + std::to_string(options.inflight) + " in flight per thread";
    std::printf("idem bench: %s via %s, %zu events (%zu unique keys, %zu re-deliveries), concurrency %zu%s\n",
                redact_url(url).c_str(), api.c_str(), options.events, unique, options.events - unique,
                options.concurrency, shape.c_str());
    std::printf("  throughput     %s events/s (%.3f s)\n", format_count(events_per_s).c_str(), elapsed);
    std::printf("  caller CPU     %.2f us per event (%s events per CPU-second of the calling threads)\n",
                cpu_us_per_event, format_count(cpu_us_per_event > 0 ? 1e6 / cpu_us_per_event : 0).c_str());
    std::printf("  latency        p50 %s   p99 %s   p999 %s   max %s\n", format_us(p50).c_str(), format_us(p99).c_str(),
                format_us(p999).c_str(), format_us(max).c_str());
    std::printf("  handler runs   %llu, unique keys %zu: %s\n", static_cast<unsigned long long>(executions), unique,
                once ? "OK, each key ran exactly once" : "MISMATCH");
    std::printf("  duplicates     %llu replayed, %llu in progress, %llu other\n",
                static_cast<unsigned long long>(tally.replayed.load()),
                static_cast<unsigned long long>(tally.in_progress.load()),
                static_cast<unsigned long long>(tally.other_duplicates.load()));
    std::printf("  store calls    %.2f per event\n",
                options.events > 0 ? static_cast<double>(store_calls) / static_cast<double>(options.events) : 0.0);
    if (bytes_per_record) {
      std::printf("  bytes/record   %.0f (estimated by the store on a sample of this run's records)\n",
                  *bytes_per_record);
    } else if (!bytes_error.empty()) {
      std::printf("  bytes/record   unknown (%s)\n", bytes_error.c_str());
    } else {
      std::printf("  bytes/record   unknown (the store does not estimate a record's size)\n");
    }
    std::printf("  errors         %llu%s%s\n", static_cast<unsigned long long>(errors), errors ? ", first: " : "",
                tally.first_error.c_str());
  }
  if (listener) {
    // The verdict is printed; keep /metrics up so that the last scrape sees
    // the final counts. SIGINT or SIGTERM ends the wait early, cleanly.
    std::fflush(stdout);
    wait_for_stop_signal(parse_duration(options.metrics_linger));
  }
  if (!once && errors == 0) {
    throw CliError(kExitCheckFailed, "handler executions (" + std::to_string(executions) + ") != unique keys (" +
                                         std::to_string(unique) + "): " + std::to_string(keys_run_twice) +
                                         " keys ran more than once, " + std::to_string(keys_never_run) + " never");
  }
  if (errors != 0) {
    throw CliError(kExitError, std::to_string(errors) + " deliveries failed; first: " + tally.first_error);
  }
  if (cleanup_failures != 0) {
    throw CliError(kExitError,
                   std::to_string(cleanup_failures) +
                       " of the run's records could not be removed (they stay in the store); first: " + cleanup_error);
  }
  return kExitOk;
}

}  // namespace

void add_bench_command(CLI::App& app, Action& action) {
  auto options = std::make_shared<BenchOptions>();
  CLI::App* command =
      app.add_subcommand("bench", "Load generator: N events, a fraction duplicates, C callers in flight");
  add_common_options(*command, options->common);
  command->add_option("-n,--events", options->events, "Deliveries in total (default 10000)");
  command->add_option("-c,--concurrency", options->concurrency, "Callers in flight (threads, default 8)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{4096}));
  command
      ->add_option("-d,--duplicate-ratio", options->duplicate_ratio,
                   "Fraction of deliveries that re-deliver an earlier key (default 0.2)")
      ->check(CLI::Range(0.0, 0.99));
  command->add_option("--batch", options->batch, "Claim B deliveries per round trip (claim_many; default 1)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{10000}));
  command->add_option("--result-bytes", options->result_bytes, "Size of each stored result (default 64)")
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 20));
  command->add_option("--api", options->api,
                      "guard (IdempotentEventProcessor::process), async (process_async, --inflight events in flight "
                      "per thread) or wrapper (idempotent_event_handler)");
  command
      ->add_option("--inflight", options->inflight,
                   "With --api async: events in flight per thread (default 64; stores that answer inline, memory "
                   "and SQLite, finish each event before the next starts)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{100000}));
  command->add_option("--seed", options->seed, "Seed of the delivery sequence (default 42)");
  command->add_flag("--keep", options->keep, "Keep the records written (default: delete them afterwards)");
  command->add_option("--metrics-out", options->metrics_out,
                      "Write the run's Prometheus metrics (text format) to this file");
  command->add_option("--metrics-listen", options->metrics_listen,
                      "Serve the run's metrics on http://HOST:PORT/metrics while it runs (e.g. 127.0.0.1:9464)");
  command
      ->add_option("--metrics-linger", options->metrics_linger,
                   "With --metrics-listen: keep serving this long after the run (default 0; SIGTERM ends it)")
      ->check(validate_duration);
  command
      ->add_option("--snapshot-interval", options->snapshot_interval,
                   "With --metrics-listen: how often to read the store-level gauges (default 10s)")
      ->check(validate_duration);
  command->callback([options, &action] { action = [options] { return run_bench(*options); }; });
}

}  // namespace idem::cli
