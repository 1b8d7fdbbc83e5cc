// idem._idem.Checker: the manual pattern (IdempotencyChecker), every store
// call made with the GIL released.
#include <chrono>

#include "bindings.h"
#include "idem/core/key.h"

namespace idem::python {

namespace {

using Ms = std::chrono::milliseconds;
using Release = py::call_guard<py::gil_scoped_release>;

struct OptionOverrides {
  std::optional<double> ttl_seconds;
  std::optional<double> lease_seconds;
  std::optional<std::string> key_prefix;
  std::optional<std::string> scope;
  std::optional<bool> validate_payload;
  std::optional<bool> hash_keys;
  std::optional<std::size_t> max_result_bytes;
};

Ms seconds_to_ms(double seconds, const char* name) {
  if (!(seconds > 0)) {
    throw_error(Error(ErrorCode::kInvalidConfiguration, std::string(name) + " must be a positive number of seconds"));
  }
  return Ms(static_cast<std::int64_t>(seconds * 1000.0 + 0.5));
}

CheckerOptions apply(CheckerOptions options, const OptionOverrides& o) {
  if (o.ttl_seconds) options.ttl = seconds_to_ms(*o.ttl_seconds, "ttl_seconds");
  if (o.lease_seconds) options.lease = seconds_to_ms(*o.lease_seconds, "lease_seconds");
  if (o.key_prefix) options.key.prefix = *o.key_prefix;
  if (o.scope) options.key.scope = *o.scope;
  if (o.validate_payload) options.validate_payload = *o.validate_payload;
  if (o.hash_keys) options.key.hash_keys = *o.hash_keys;
  if (o.max_result_bytes) options.max_result_bytes = *o.max_result_bytes;
  if (Status valid = options.validate(); !valid) throw_error(std::move(valid).error());
  return options;
}

template <typename T>
T value_or_throw(Result<T> result) {
  if (!result) throw_error(std::move(result).error());
  return std::move(result).value();
}
void ok_or_throw(Status status) {
  if (!status) throw_error(std::move(status).error());
}

std::unique_ptr<PyChecker> open_checker(std::optional<std::string> url, const OptionOverrides& overrides) {
  CheckerOptions options = apply(CheckerOptions{}, overrides);
  const std::string where = url ? *url : default_store_url();
  auto checker = value_or_throw(IdempotencyChecker::from_url(where, std::move(options)));
  return std::make_unique<PyChecker>(std::move(checker));
}

}  // namespace

void register_checker(py::module_& m) {
  py::class_<PyChecker>(m, "Checker", "The C++ IdempotencyChecker; idem.IdempotencyChecker wraps it.")
      .def_static(
          "open",
          [](std::optional<std::string> url, std::optional<double> ttl, std::optional<double> lease,
             std::optional<std::string> prefix, std::optional<std::string> scope, std::optional<bool> validate,
             std::optional<bool> hash_keys, std::optional<std::size_t> max_result_bytes) {
            OptionOverrides o{ttl, lease, std::move(prefix), std::move(scope), validate, hash_keys, max_result_bytes};
            py::gil_scoped_release release;  // opening a network store connects
            return open_checker(std::move(url), o);
          },
          py::arg("url") = py::none(), py::arg("ttl_seconds") = py::none(), py::arg("lease_seconds") = py::none(),
          py::arg("key_prefix") = py::none(), py::arg("scope") = py::none(), py::arg("validate_payload") = py::none(),
          py::arg("hash_keys") = py::none(), py::arg("max_result_bytes") = py::none())
      .def_static(
          "default", [] { return std::make_unique<PyChecker>(get_idempotency_checker()); }, Release())
      .def_static(
          "set_default",
          [](const PyChecker* checker) { set_idempotency_checker(checker ? checker->checker : nullptr); },
          py::arg("checker"))
      .def(
          "with_options",
          [](const PyChecker& self, std::optional<double> ttl, std::optional<double> lease,
             std::optional<std::string> prefix, std::optional<std::string> scope) {
            OptionOverrides o{ttl, lease, std::move(prefix), std::move(scope), {}, {}, {}};
            CheckerOptions options = apply(self.checker->options(), o);
            return std::make_unique<PyChecker>(
                std::make_shared<IdempotencyChecker>(self.checker->store_ptr(), std::move(options)));
          },
          py::arg("ttl_seconds") = py::none(), py::arg("lease_seconds") = py::none(),
          py::arg("key_prefix") = py::none(), py::arg("scope") = py::none(),
          "A checker on the same store (same connections) with other options.")
      .def_property_readonly("store_kind", [](const PyChecker& c) { return std::string(c.checker->store().kind()); })
      .def_property_readonly("async_is_native", [](const PyChecker& c) { return c.checker->store().async_is_native(); })
      .def_property_readonly(
          "ttl_seconds", [](const PyChecker& c) { return static_cast<double>(c.checker->options().ttl.count()) / 1e3; })
      .def_property_readonly(
          "lease_seconds",
          [](const PyChecker& c) { return static_cast<double>(c.checker->options().lease.count()) / 1e3; })
      .def_property_readonly("key_prefix", [](const PyChecker& c) { return c.checker->options().key.prefix; })
      .def_property_readonly("scope", [](const PyChecker& c) { return c.checker->options().key.scope; })
      .def(
          "key_for", [](const PyChecker& c, const Envelope& e) { return value_or_throw(c.checker->key_for(e)); },
          py::arg("event"))
      .def(
          "key_for", [](const PyChecker& c, const std::string& key) { return value_or_throw(c.checker->key_for(key)); },
          py::arg("idempotency_key"))
      .def(
          "claim", [](const PyChecker& c, const Envelope& e) { return value_or_throw(c.checker->claim(e)); },
          py::arg("event"), Release())
      .def(
          "complete",
          [](const PyChecker& c, const std::string& key, Token token, const std::string& result) {
            ok_or_throw(c.checker->complete(key, token, result));
          },
          py::arg("key"), py::arg("token"), py::arg("result_json"), Release())
      .def(
          "fail",
          [](const PyChecker& c, const std::string& key, Token token, const std::string& error, bool retryable) {
            ok_or_throw(c.checker->fail(key, token, error, retryable));
          },
          py::arg("key"), py::arg("token"), py::arg("error"), py::arg("retryable") = true, Release())
      .def(
          "extend",
          [](const PyChecker& c, const std::string& key, Token token) { ok_or_throw(c.checker->extend(key, token)); },
          py::arg("key"), py::arg("token"), Release())
      .def(
          "checkpoint",
          [](const PyChecker& c, const std::string& key, Token token, std::string name, std::string data) {
            ok_or_throw(c.checker->checkpoint(key, token, Checkpoint{std::move(name), std::move(data)}));
          },
          py::arg("key"), py::arg("token"), py::arg("name"), py::arg("data"), Release())
      .def(
          "get", [](const PyChecker& c, const std::string& key) { return value_or_throw(c.checker->get(key)); },
          py::arg("key"), Release(), "The record at a full store key.")
      .def(
          "get_processing_record",
          [](const PyChecker& c, const std::string& key) {
            return value_or_throw(c.checker->get_processing_record(key));
          },
          py::arg("idempotency_key"), Release())
      .def(
          "is_duplicate",
          [](const PyChecker& c, const std::string& key) { return value_or_throw(c.checker->is_duplicate(key)); },
          py::arg("idempotency_key"), Release())
      .def(
          "delete_record",
          [](const PyChecker& c, const std::string& key) { return value_or_throw(c.checker->delete_record(key)); },
          py::arg("idempotency_key"), Release())
      .def(
          "wait_for_completion",
          [](const PyChecker& c, const std::string& key, double timeout) {
            return value_or_throw(c.checker->wait_for_completion(key, Ms(static_cast<std::int64_t>(timeout * 1000))));
          },
          py::arg("key"), py::arg("timeout_seconds"), Release())
      .def(
          "ping",
          [](const PyChecker& c) {
            auto health = c.checker->health();
            return health.reachable;
          },
          Release());

  m.def("default_store_url", &default_store_url);
}

}  // namespace idem::python
