#include "idem/core/error.h"

namespace idem {

std::string_view to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kTimeout: return "timeout";
    case ErrorCode::kLeaseLost: return "lease_lost";
    case ErrorCode::kMismatch: return "mismatch";
    case ErrorCode::kResultTooLarge: return "result_too_large";
    case ErrorCode::kResourceExhausted: return "resource_exhausted";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kCorrupt: return "corrupt";
    case ErrorCode::kInternal: return "internal";
    case ErrorCode::kInvalidConfiguration: return "invalid_configuration";
    case ErrorCode::kDuplicate: return "duplicate";
    case ErrorCode::kInProgress: return "in_progress";
  }
  return "unknown";
}

std::string Error::to_string() const {
  std::string text(idem::to_string(code_));
  text += ": ";
  text += message_;
  return text;
}

void Status::value() const {
  if (!ok_) throw_error(error_);
}

IdemError::IdemError(Error error) : std::runtime_error(error.to_string()), error_(std::move(error)) {}

void throw_error(Error error) {
  switch (error.code()) {
    case ErrorCode::kUnavailable:
    case ErrorCode::kTimeout: throw StoreUnavailableError(std::move(error));
    case ErrorCode::kLeaseLost: throw LeaseLostError(std::move(error));
    case ErrorCode::kMismatch: throw KeyMismatchError(std::move(error));
    case ErrorCode::kInvalidArgument: throw InvalidEnvelopeError(std::move(error));
    case ErrorCode::kInvalidConfiguration: throw ConfigurationError(std::move(error));
    case ErrorCode::kResultTooLarge: throw ResultTooLargeError(std::move(error));
    default: throw IdemError(std::move(error));
  }
}

}  // namespace idem
