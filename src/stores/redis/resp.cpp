// RESP formatting and reply reading; see resp.h.
#include "stores/redis/resp.h"

#include <array>
#include <charconv>
#include <new>

namespace idem::redis_detail {
namespace {

template <typename Range>
void append_command_impl(std::string& out, const Range& args) {
  out += '*';
  append_decimal(out, static_cast<std::uint64_t>(std::size(args)));
  out += "\r\n";
  for (std::string_view arg : args) {
    out += '$';
    append_decimal(out, static_cast<std::uint64_t>(arg.size()));
    out += "\r\n";
    out.append(arg);
    out += "\r\n";
  }
}

}  // namespace

void append_decimal(std::string& out, std::uint64_t value) {
  std::array<char, 24> buf{};
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), value);
  (void)ec;
  out.append(buf.data(), end);
}

void append_decimal(std::string& out, std::int64_t value) {
  std::array<char, 24> buf{};
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), value);
  (void)ec;
  out.append(buf.data(), end);
}

void append_command(std::string& out, std::initializer_list<std::string_view> args) { append_command_impl(out, args); }
void append_command(std::string& out, std::span<const std::string_view> args) { append_command_impl(out, args); }

std::string_view reply_text(const redisReply* r) {
  if (r == nullptr ||
      (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS && r->type != REDIS_REPLY_ERROR) ||
      r->str == nullptr) {
    return {};
  }
  return std::string_view(r->str, r->len);
}

bool text_int(std::string_view text, long long& out) {
  if (text.empty()) return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

bool reply_int(const redisReply* r, long long& out) {
  if (r == nullptr) return false;
  if (r->type == REDIS_REPLY_INTEGER) {
    out = r->integer;
    return true;
  }
  if (r->type != REDIS_REPLY_STRING || r->str == nullptr) return false;
  return text_int(std::string_view(r->str, r->len), out);
}

namespace {

// hiredis 0.14 allocates an array reply's element table as soon as it reads
// the header: "*500000001\r\n" from a broken or hostile server would ask for
// 4 GB at once. The reader's functions are replaced by hiredis's own, except
// that an array longer than any reply of ours is refused (the reader then
// fails, and the connection is dropped).
constexpr int kMaxArrayElements = 1 << 20;

const redisReplyObjectFunctions& bounded_functions() {
  static const redisReplyObjectFunctions fns = [] {
    redisReader* probe = redisReaderCreate();
    if (probe == nullptr) throw std::bad_alloc();
    static redisReplyObjectFunctions defaults = *probe->fn;
    redisReaderFree(probe);
    redisReplyObjectFunctions bounded = defaults;
    bounded.createArray = [](const redisReadTask* task, int elements) -> void* {
      if (elements > kMaxArrayElements) return nullptr;
      return defaults.createArray(task, elements);
    };
    return bounded;
  }();
  return fns;
}

}  // namespace

ReplyReader::ReplyReader()
    : reader_(redisReaderCreateWithFunctions(const_cast<redisReplyObjectFunctions*>(&bounded_functions()))) {
  if (reader_ == nullptr) throw std::bad_alloc();
}

ReplyReader::~ReplyReader() { redisReaderFree(reader_); }

bool ReplyReader::feed(const char* data, std::size_t size) { return redisReaderFeed(reader_, data, size) == REDIS_OK; }

bool ReplyReader::next(ReplyPtr& reply) {
  void* raw = nullptr;
  if (redisReaderGetReply(reader_, &raw) != REDIS_OK) return false;
  reply.reset(static_cast<redisReply*>(raw));
  return true;
}

std::string ReplyReader::error() const { return reader_->errstr; }

}  // namespace idem::redis_detail
