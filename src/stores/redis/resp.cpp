// RESP formatting and reply reading; see resp.h.
#include "stores/redis/resp.h"

#include <array>
#include <charconv>
#include <cstring>
#include <new>

namespace idem::redis_detail {
namespace {

std::size_t decimal_size(std::size_t value) {
  std::size_t n = 1;
  while (value >= 10) {
    value /= 10;
    ++n;
  }
  return n;
}

char* put_decimal(char* p, std::size_t value, std::size_t digits) {
  for (std::size_t i = digits; i > 0; --i) {
    p[i - 1] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
  return p + digits;
}

// One resize and straight writes: commands are formatted on the hot path of
// every request.
template <typename Range>
void append_command_impl(std::string& out, const Range& args) {
  const std::size_t count = std::size(args);
  std::size_t total = 1 + decimal_size(count) + 2;
  for (std::string_view arg : args) total += 1 + decimal_size(arg.size()) + 2 + arg.size() + 2;
  const std::size_t start = out.size();
  out.resize(start + total);
  char* p = out.data() + start;
  *p++ = '*';
  p = put_decimal(p, count, decimal_size(count));
  *p++ = '\r';
  *p++ = '\n';
  for (std::string_view arg : args) {
    *p++ = '$';
    p = put_decimal(p, arg.size(), decimal_size(arg.size()));
    *p++ = '\r';
    *p++ = '\n';
    if (!arg.empty()) std::memcpy(p, arg.data(), arg.size());
    p += arg.size();
    *p++ = '\r';
    *p++ = '\n';
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
