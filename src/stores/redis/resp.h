// File: src/stores/redis/resp.h
//
// RESP on the wire: commands are formatted straight into an output buffer
// (arrays of bulk strings, no allocation per argument), and replies are read
// with hiredis's redisReader, the only part of hiredis the store uses
// (Debian 12's hiredis 0.14 has no TLS and one timeout for everything).
#pragma once

#include <hiredis/hiredis.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace idem::redis_detail {

struct ReplyDeleter {
  void operator()(redisReply* reply) const noexcept { freeReplyObject(reply); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

// append_command() appends one command as a RESP array of bulk strings.
void append_command(std::string& out, std::initializer_list<std::string_view> args);
void append_command(std::string& out, std::span<const std::string_view> args);

// append_decimal() appends `value` in decimal.
void append_decimal(std::string& out, std::uint64_t value);
void append_decimal(std::string& out, std::int64_t value);

// reply_text() is the text of a string, status or error reply; empty for
// anything else.
std::string_view reply_text(const redisReply* reply);

// reply_int() accepts an integer reply, or a string reply holding a decimal
// integer (Lua numbers come back as integers, stored fields as strings).
bool reply_int(const redisReply* reply, long long& out);

// text_int() parses a whole decimal integer.
bool text_int(std::string_view text, long long& out);

// ReplyReader turns the bytes of a connection into replies.
class ReplyReader {
 public:
  ReplyReader();
  ~ReplyReader();
  ReplyReader(const ReplyReader&) = delete;
  ReplyReader& operator=(const ReplyReader&) = delete;

  // feed() adds received bytes; false when out of memory.
  bool feed(const char* data, std::size_t size);
  // next() sets `reply` to the next complete reply (null when more bytes are
  // needed); false when the bytes are not RESP (error() says why).
  bool next(ReplyPtr& reply);
  std::string error() const;

 private:
  redisReader* reader_;
};

}  // namespace idem::redis_detail
