// The value types: EventEnvelope (idem::Envelope), IdempotencyRecord,
// Checkpoint, Claim, and the enums; plus the Python helpers every part uses.
#include <chrono>
#include <map>

#include "bindings.h"
#include "idem/core/envelope.h"

namespace idem::python {

namespace {

// Imported once, on first use with the GIL held, and never released: these
// outlive every caller, including callbacks that run late in shutdown.
struct Helpers {
  py::object loads;
  py::object dumps;
  py::object status;
  py::object fromtimestamp;
  py::object utc;
};
const Helpers& helpers() {
  static Helpers* h = [] {
    auto* made = new Helpers();
    py::module_ json = py::module_::import("idem._json");
    made->loads = json.attr("loads");
    made->dumps = json.attr("dumps");
    made->status = py::module_::import("idem.status").attr("ProcessingStatus");
    py::module_ datetime = py::module_::import("datetime");
    made->fromtimestamp = datetime.attr("datetime").attr("fromtimestamp");
    made->utc = datetime.attr("timezone").attr("utc");
    return made;
  }();
  return *h;
}

std::string now_rfc3339() {
  return format_rfc3339(std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now()));
}

void set_payload(Envelope& envelope, const py::object& payload) {
  if (payload.is_none()) return;
  std::string text;
  if (py::isinstance<py::str>(payload)) {
    text = payload.cast<std::string>();
  } else if (py::isinstance<py::bytes>(payload)) {
    text = payload.cast<std::string>();
  } else {
    text = json_dumps(payload);
  }
  Status status = envelope.set_payload_json(text);
  if (!status) throw_error(std::move(status).error());
}

std::string occurred_at_text(const py::object& value) {
  if (value.is_none()) return now_rfc3339();
  if (py::hasattr(value, "isoformat")) {
    // A naive datetime is taken as UTC, as the original module wrote them.
    py::object aware = value;
    if (value.attr("tzinfo").is_none()) aware = value.attr("replace")(py::arg("tzinfo") = helpers().utc);
    return aware.attr("isoformat")().cast<std::string>();
  }
  return value.cast<std::string>();
}

Envelope make_envelope(std::string event_id, std::string event_type, const py::object& payload,
                       std::optional<std::string> idempotency_key,
                       std::optional<std::map<std::string, std::string>> metadata, std::string source,
                       const py::object& occurred_at) {
  if (event_id.empty())
    throw_error(Error(ErrorCode::kInvalidArgument, "envelope: event_id must be a non-empty string"));
  Envelope envelope;
  envelope.event_id = std::move(event_id);
  envelope.event_type = std::move(event_type);
  envelope.source = std::move(source);
  envelope.idempotency_key = std::move(idempotency_key);
  if (metadata) envelope.metadata = std::move(*metadata);
  envelope.occurred_at = occurred_at_text(occurred_at);
  if (!is_rfc3339(envelope.occurred_at)) {
    throw_error(Error(ErrorCode::kInvalidArgument, "envelope: occurred_at is not an RFC 3339 date-time"));
  }
  set_payload(envelope, payload);
  return envelope;
}

Envelope parse_envelope(const py::object& text) {
  std::string json = text.cast<std::string>();  // str or bytes
  Result<Envelope> parsed = Envelope::parse(json);
  if (!parsed) throw_error(std::move(parsed).error());
  return std::move(parsed).value();
}

py::dict record_dict(const IdempotencyRecord& r) {
  py::dict d;
  d["idempotency_key"] = r.idempotency_key;
  d["event_id"] = r.event_id;
  d["event_type"] = r.event_type;
  d["status"] = std::string(to_string(r.status));
  d["result"] = decode_result(r.result);
  d["error"] = r.error;
  d["retryable"] = r.retryable;
  d["first_seen_at"] = format_rfc3339(r.first_seen_at);
  d["completed_at"] = r.completed_at ? py::object(py::str(format_rfc3339(*r.completed_at))) : py::none();
  d["attempt"] = r.attempt;
  d["token"] = r.token;
  d["lease_expires_at"] = format_rfc3339(r.lease_expires_at);
  d["fingerprint"] = r.fingerprint;
  d["expires_at"] = format_rfc3339(r.expires_at);
  return d;
}

}  // namespace

py::object json_loads(std::string_view text) { return helpers().loads(py::str(text.data(), text.size())); }

std::string json_dumps(const py::handle& value) { return helpers().dumps(value).cast<std::string>(); }

py::object decode_result(const std::optional<std::string>& text) {
  if (!text) return py::none();
  return json_loads(*text);
}

py::object status_object(ProcessingStatus status) { return helpers().status(py::str(std::string(to_string(status)))); }

py::object datetime_object(Timestamp time) {
  const double seconds = static_cast<double>(time.time_since_epoch().count()) / 1000.0;
  return helpers().fromtimestamp(seconds, helpers().utc);
}

void register_types(py::module_& m) {
  py::class_<Envelope>(m, "EventEnvelope", R"doc(
An event as it travels: event_id (required), event_type, source, occurred_at
(RFC 3339, default now), payload (a JSON object: dict, or JSON text),
metadata (str -> str) and idempotency_key (optional; the key falls back to
event_id). JSON in and out: EventEnvelope.from_json(text), to_json().)doc")
      .def(py::init(&make_envelope), py::arg("event_id"), py::arg("event_type") = "", py::arg("payload") = py::none(),
           py::arg("idempotency_key") = py::none(), py::arg("metadata") = py::none(), py::arg("source") = "",
           py::arg("occurred_at") = py::none())
      .def_static("from_json", &parse_envelope, py::arg("text"),
                  "Parses an envelope; InvalidEnvelopeError names the bad field.")
      .def_static(
          "from_dict", [](const py::dict& d) { return parse_envelope(py::str(json_dumps(d))); }, py::arg("data"))
      .def("to_json", &Envelope::to_json)
      .def("to_dict", [](const Envelope& e) { return json_loads(e.to_json()); })
      .def_readwrite("event_id", &Envelope::event_id)
      .def_readwrite("event_type", &Envelope::event_type)
      .def_readwrite("source", &Envelope::source)
      .def_readwrite("occurred_at", &Envelope::occurred_at)
      .def_readwrite("idempotency_key", &Envelope::idempotency_key)
      .def_property(
          "payload", [](const Envelope& e) { return json_loads(e.payload); },
          [](Envelope& e, const py::object& payload) {
            e.payload = "{}";
            set_payload(e, payload);
          },
          "The payload, decoded (a new dict on every read; assign to change it).")
      .def_property_readonly("payload_json", [](const Envelope& e) { return e.payload; })
      .def_property(
          "metadata", [](const Envelope& e) { return e.metadata; },
          [](Envelope& e, std::map<std::string, std::string> metadata) { e.metadata = std::move(metadata); })
      .def_property_readonly("effective_key", [](const Envelope& e) { return e.effective_key(); })
      .def_property_readonly(
          "timestamp",
          [](const Envelope& e) -> py::object {
            if (e.occurred_at.empty()) return py::none();
            return py::module_::import("datetime")
                .attr("datetime")
                .attr("fromisoformat")(py::str(e.occurred_at.back() == 'Z'
                                                   ? e.occurred_at.substr(0, e.occurred_at.size() - 1) + "+00:00"
                                                   : e.occurred_at));
          })
      .def("payload_fingerprint", &Envelope::payload_fingerprint)
      .def("__eq__", [](const Envelope& a, const Envelope& b) { return a.to_json() == b.to_json(); })
      .def("__repr__", [](const Envelope& e) {
        return "EventEnvelope(event_id=" + py::repr(py::str(e.event_id)).cast<std::string>() +
               ", event_type=" + py::repr(py::str(e.event_type)).cast<std::string>() +
               ", key=" + py::repr(py::str(e.effective_key())).cast<std::string>() + ")";
      });

  py::class_<Checkpoint>(m, "Checkpoint")
      .def(py::init([](std::string name, std::string data) {
             return Checkpoint{std::move(name), std::move(data)};
           }),
           py::arg("name"), py::arg("data") = "")
      .def_readonly("name", &Checkpoint::name)
      .def_readonly("data", &Checkpoint::data)
      .def("__repr__", [](const Checkpoint& c) {
        return "Checkpoint(name=" + py::repr(py::str(c.name)).cast<std::string>() + ")";
      });

  py::class_<IdempotencyRecord>(m, "IdempotencyRecord", "What the store keeps per key (read-only).")
      .def_readonly("idempotency_key", &IdempotencyRecord::idempotency_key, "The full store key.")
      .def_readonly("event_id", &IdempotencyRecord::event_id)
      .def_readonly("event_type", &IdempotencyRecord::event_type)
      .def_property_readonly("status", [](const IdempotencyRecord& r) { return status_object(r.status); })
      .def_property_readonly(
          "result", [](const IdempotencyRecord& r) { return decode_result(r.result); }, "The result, decoded JSON.")
      .def_readonly("result_json", &IdempotencyRecord::result)
      .def_readonly("error", &IdempotencyRecord::error)
      .def_readonly("retryable", &IdempotencyRecord::retryable)
      .def_property_readonly("first_seen_at",
                             [](const IdempotencyRecord& r) { return datetime_object(r.first_seen_at); })
      .def_property_readonly("completed_at",
                             [](const IdempotencyRecord& r) -> py::object {
                               return r.completed_at ? datetime_object(*r.completed_at) : py::none();
                             })
      .def_readonly("attempt", &IdempotencyRecord::attempt)
      .def_readonly("token", &IdempotencyRecord::token)
      .def_property_readonly("lease_expires_at",
                             [](const IdempotencyRecord& r) { return datetime_object(r.lease_expires_at); })
      .def_readonly("fingerprint", &IdempotencyRecord::fingerprint)
      .def_property_readonly("expires_at", [](const IdempotencyRecord& r) { return datetime_object(r.expires_at); })
      .def_readonly("checkpoint", &IdempotencyRecord::checkpoint)
      .def("to_dict", &record_dict)
      .def("__repr__", [](const IdempotencyRecord& r) {
        return "IdempotencyRecord(key=" + py::repr(py::str(r.idempotency_key)).cast<std::string>() +
               ", status=" + std::string(to_string(r.status)) + ", attempt=" + std::to_string(r.attempt) + ")";
      });

  py::enum_<ClaimStatus>(m, "ClaimStatus")
      .value("ACQUIRED", ClaimStatus::kAcquired)
      .value("IN_PROGRESS", ClaimStatus::kInProgress)
      .value("COMPLETED", ClaimStatus::kCompleted)
      .value("FAILED", ClaimStatus::kFailed)
      .value("MISMATCH", ClaimStatus::kMismatch);
  py::enum_<AcquireKind>(m, "AcquireKind")
      .value("NEW", AcquireKind::kNew)
      .value("TAKEOVER", AcquireKind::kTakeover)
      .value("RETRY", AcquireKind::kRetry);

  py::class_<Claim>(m, "Claim", "The answer of mark_processing(): truthy when this worker acquired the key.")
      .def_readonly("key", &Claim::key, "The full store key.")
      .def_property_readonly("status", [](const Claim& c) { return c.outcome.status; })
      .def_property_readonly("acquired", [](const Claim& c) { return c.outcome.acquired(); })
      .def("__bool__", [](const Claim& c) { return c.outcome.acquired(); })
      .def_property_readonly("acquire_kind", [](const Claim& c) { return c.outcome.acquire_kind; })
      .def_property_readonly("token", [](const Claim& c) { return c.outcome.token; })
      .def_property_readonly("attempt", [](const Claim& c) { return c.outcome.attempt; })
      .def_property_readonly("last_checkpoint", [](const Claim& c) { return c.outcome.checkpoint; })
      .def_property_readonly("record", [](const Claim& c) { return c.outcome.record; })
      .def_property_readonly("cached_result",
                             [](const Claim& c) -> py::object {
                               if (c.outcome.status != ClaimStatus::kCompleted || !c.outcome.record) return py::none();
                               return decode_result(c.outcome.record->result);
                             })
      .def("__repr__", [](const Claim& c) {
        return "Claim(key=" + py::repr(py::str(c.key)).cast<std::string>() +
               ", status=" + std::string(to_string(c.outcome.status)) + ", token=" + std::to_string(c.outcome.token) +
               ")";
      });
}

}  // namespace idem::python
