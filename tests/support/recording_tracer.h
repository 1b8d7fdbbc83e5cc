// File: tests/support/recording_tracer.h
//
// RecordingTracer: an idem::Tracer for tests that keeps every ended span with
// its attributes (integers as decimal text) and error, in the order the spans
// ended.
//
//   auto tracer = std::make_shared<idem::test::RecordingTracer>();
//   auto observer = std::make_shared<idem::TracingObserver>(tracer);
//   ...
//   auto claims = tracer->spans_named("idem.claim");
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "idem/core/tracing.h"

namespace idem::test {

struct RecordingTracer final : Tracer {
  struct Ended {
    std::string name;
    std::map<std::string, std::string> attributes;
    std::string error;
  };

  struct Span final : SpanScope {
    Span(RecordingTracer& t, std::string n) : tracer(t), name(std::move(n)) {}
    ~Span() override {
      std::lock_guard lock(tracer.mutex);
      tracer.ended.push_back({name, attributes, error});
    }
    void set_attribute(std::string_view key, std::string_view value) override {
      attributes[std::string(key)] = std::string(value);
    }
    void set_attribute(std::string_view key, std::int64_t value) override {
      attributes[std::string(key)] = std::to_string(value);
    }
    void set_error(std::string_view message) override { error = message; }
    RecordingTracer& tracer;
    std::string name;
    std::map<std::string, std::string> attributes;
    std::string error;
  };

  std::unique_ptr<SpanScope> start_span(std::string_view name) override {
    return std::make_unique<Span>(*this, std::string(name));
  }

  // The ended spans called `name`, in the order they ended.
  std::vector<Ended> spans_named(std::string_view name) {
    std::lock_guard lock(mutex);
    std::vector<Ended> out;
    for (const auto& span : ended) {
      if (span.name == name) out.push_back(span);
    }
    return out;
  }

  std::mutex mutex;
  std::vector<Ended> ended;
};

}  // namespace idem::test
