/// @file idem/core/error.h
/// @brief The one error model of Idem: ErrorCode, Error, Result, Status and
/// the exceptions.
///
/// Store operations return `Result<T>` (or `Status` when there is no value);
/// the usage patterns (wrapper, guard) turn the same errors into typed
/// exceptions. Idempotency outcomes such as "this is a duplicate" are values
/// (ClaimStatus in record.h), never errors.
///
/// @code
/// idem::Result<std::optional<idem::IdempotencyRecord>> r = store.get(key);
/// if (!r) { log(r.error().message()); return; }
/// @endcode
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace idem {

/// ErrorCode is deliberately small: callers branch on it, so every code must
/// imply a different reaction. docs/guide/troubleshooting.md has the table of
/// codes, exceptions and what a consumer should do with the message (retry,
/// redeliver, ack or dead-letter). New codes are appended so that the
/// numeric values of the old ones never change.
enum class ErrorCode : std::uint8_t {
  kOk = 0,             ///< no error; never carried by an Error
  kInvalidArgument,    ///< the message is bad (envelope, key, request): dead-letter it, never retry
  kUnavailable,        ///< the store cannot be reached: retry later, redeliver
  kTimeout,            ///< the store did not answer in time: retry later
  kLeaseLost,          ///< a newer worker owns the key: stop, do not retry
  kMismatch,           ///< key reused with another payload: a producer bug
  kResultTooLarge,     ///< the handler's result exceeds the configured limit
  kResourceExhausted,  ///< a bounded store is full of live records
  kNotFound,           ///< the record (or, when opening must not create, the store) does not exist
  kCorrupt,            ///< stored data cannot be decoded
  kInternal,           ///< a bug or an unexpected store reply
  /// The program, not the message, is wrong: out-of-range options, a bad
  /// store URL, or an API call made in a state that forbids it. Fix the code
  /// or the configuration; do not dead-letter the message (it is fine).
  kInvalidConfiguration,
  /// A duplicate of an event that already finished (DuplicateEventError, the
  /// wrapper with skip_on_duplicate = false): ack it, the cached result is
  /// attached. Never a failure of the store.
  kDuplicate,
  /// A duplicate whose original is still running (EventInProgressError): do
  /// not ack; redeliver later (NATS: nak with a delay; HTTP: 409 with
  /// Retry-After), because the original may still die.
  kInProgress,
};

/// Returns the stable lower-case name of `code`, such as "unavailable".
std::string_view to_string(ErrorCode code) noexcept;

/// Error is a code plus a human-readable message that says what happened and,
/// where it helps, what to do.
class Error {
 public:
  /// A kInternal error with an empty message (a placeholder, not a real error).
  Error() = default;
  /// An error with `code` and `message`.
  Error(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  /// What kind of error it is: branch on this, never on the message.
  ErrorCode code() const noexcept { return code_; }
  /// What happened, for people: may change between versions.
  const std::string& message() const noexcept { return message_; }

  /// retryable() is true when the same call (or a redelivery of the same
  /// message) may succeed later without any change by the caller: the store
  /// was down or slow, or the original of a duplicate was still running.
  bool retryable() const noexcept {
    return code_ == ErrorCode::kUnavailable || code_ == ErrorCode::kTimeout || code_ == ErrorCode::kInProgress;
  }

  /// "unavailable: sqlite: database is locked" — for logs and exceptions.
  std::string to_string() const;

 private:
  ErrorCode code_ = ErrorCode::kInternal;
  std::string message_;
};

/// Result<T> holds either a value or an Error. Check it before use; value() on
/// an error throws the matching idem exception (see exceptions below).
template <typename T>
class [[nodiscard]] Result {
 public:
  // NOLINTBEGIN(google-explicit-constructor): implicit like std::expected.
  /// A successful result holding `value`.
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}
  /// A failed result holding `error`.
  Result(Error error) : state_(std::in_place_index<1>, std::move(error)) {}
  // NOLINTEND(google-explicit-constructor)

  /// True when the result holds a value.
  bool ok() const noexcept { return state_.index() == 0; }
  /// ok(), for `if (result)`.
  explicit operator bool() const noexcept { return ok(); }

  /// The value. On an error, throws the matching exception (throw_error()).
  T& value() &;
  /// The value. On an error, throws the matching exception (throw_error()).
  const T& value() const&;
  /// Moves the value out. On an error, throws the matching exception
  /// (throw_error()).
  T&& value() &&;
  /// value(): throws on an error.
  T& operator*() & { return value(); }
  /// value(): throws on an error.
  const T& operator*() const& { return value(); }
  /// &value(): throws on an error.
  T* operator->() { return &value(); }
  /// &value(): throws on an error.
  const T* operator->() const { return &value(); }

  /// The error. Only valid when !ok() (undefined otherwise: check first).
  const Error& error() const& { return std::get<1>(state_); }
  /// Moves the error out, for instance to return it from a function with another
  /// Result type. Only valid when !ok().
  Error&& error() && { return std::get<1>(std::move(state_)); }

 private:
  std::variant<T, Error> state_;
};

/// Status is Result<void>: success, or an Error.
class [[nodiscard]] Status {
 public:
  /// Success.
  Status() = default;
  /// A failure carrying `error`.
  Status(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT(google-explicit-constructor)

  /// True on success.
  bool ok() const noexcept { return ok_; }
  /// ok(), for `if (status)`.
  explicit operator bool() const noexcept { return ok_; }
  /// The error. Only meaningful when !ok().
  const Error& error() const& { return error_; }
  /// Moves the error out, for instance to return it as a Result<T>. Only meaningful
  /// when !ok().
  Error&& error() && { return std::move(error_); }
  /// Throws the matching idem exception when not ok.
  void value() const;

 private:
  Error error_;
  bool ok_ = true;
};

/// A successful Status; reads better than `{}` in a return statement.
inline Status ok_status() { return {}; }

// ---------------------------------------------------------------------------
// Exceptions, for the patterns layer (wrapper and guard) where a handler's
// control flow is exception-based anyway. Each maps to one ErrorCode.

/// IdemError is the base of every exception Idem throws.
class IdemError : public std::runtime_error {
 public:
  /// Wraps `error`; what() is Error::to_string(), such as
  /// "unavailable: redis: connection refused".
  explicit IdemError(Error error);
  /// The code of the wrapped error.
  ErrorCode code() const noexcept { return error_.code(); }
  /// The wrapped error.
  const Error& error() const noexcept { return error_; }

 private:
  Error error_;
};

/// StoreUnavailableError: the store is down or too slow; the handler did not
/// run (fail-closed). Let the message be redelivered.
class StoreUnavailableError : public IdemError {
 public:
  /// Wraps `error` (code kUnavailable or kTimeout); see IdemError::IdemError().
  using IdemError::IdemError;
};

/// LeaseLostError: another worker took the key over while this one ran; its
/// result was not stored.
class LeaseLostError : public IdemError {
 public:
  /// Wraps `error` (code kLeaseLost); see IdemError::IdemError().
  using IdemError::IdemError;
};

/// KeyMismatchError: the idempotency key was already used with a different
/// payload.
class KeyMismatchError : public IdemError {
 public:
  /// Wraps `error` (code kMismatch); see IdemError::IdemError().
  using IdemError::IdemError;
};

/// InvalidEnvelopeError (kInvalidArgument): the envelope or key is
/// malformed; the message names the field. Retrying cannot help: dead-letter
/// the message.
class InvalidEnvelopeError : public IdemError {
 public:
  /// Wraps `error` (code kInvalidArgument); see IdemError::IdemError().
  using IdemError::IdemError;
};

/// ConfigurationError (kInvalidConfiguration): options out of range, a bad
/// store URL, or an API call that is not allowed in the current state. The
/// program is wrong, not the message: fix it, and do not dead-letter.
class ConfigurationError : public IdemError {
 public:
  /// Wraps `error` (code kInvalidConfiguration); see IdemError::IdemError().
  using IdemError::IdemError;
};

/// ResultTooLargeError: the handler's result is above the configured limit and
/// was not stored.
class ResultTooLargeError : public IdemError {
 public:
  /// Wraps `error` (code kResultTooLarge); see IdemError::IdemError().
  using IdemError::IdemError;
};

/// throw_error() throws the exception type that matches `error.code()`:
/// kUnavailable and kTimeout → StoreUnavailableError, kLeaseLost →
/// LeaseLostError, kMismatch → KeyMismatchError, kInvalidArgument →
/// InvalidEnvelopeError, kInvalidConfiguration → ConfigurationError,
/// kResultTooLarge → ResultTooLargeError, anything else → IdemError.
/// DuplicateEventError (kDuplicate) and EventInProgressError (kInProgress)
/// carry more than an Error and are thrown only by the wrapper (handler.h).
[[noreturn]] void throw_error(Error error);

template <typename T>
T& Result<T>::value() & {
  if (!ok()) throw_error(std::get<1>(state_));
  return std::get<0>(state_);
}
template <typename T>
const T& Result<T>::value() const& {
  if (!ok()) throw_error(std::get<1>(state_));
  return std::get<0>(state_);
}
template <typename T>
T&& Result<T>::value() && {
  if (!ok()) throw_error(std::get<1>(state_));
  return std::get<0>(std::move(state_));
}

}  // namespace idem
