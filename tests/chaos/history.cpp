// The history file format; see history.h.
#include "chaos/history.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <utility>

namespace idem::chaos {

pid_t Event::pid() const {
  pid_t pid = 0;
  const auto dot = proc.find('.');
  const std::string_view digits = std::string_view(proc).substr(0, dot);
  std::from_chars(digits.data(), digits.data() + digits.size(), pid);
  return pid;
}

std::int64_t now_us() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1'000;
}

std::optional<HistoryWriter> HistoryWriter::open(const std::string& path, std::string* error) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (error) *error = path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  return HistoryWriter(fd);
}

HistoryWriter::HistoryWriter(HistoryWriter&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), mutex_(std::move(other.mutex_)) {}

HistoryWriter::~HistoryWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void HistoryWriter::write(Event event) {
  if (event.time_us == 0) event.time_us = now_us();
  std::string line = format_event(event);
  line += '\n';
  // The lock keeps one thread's line whole; a short write on a regular file
  // only happens when the disk is full, and then the history says so.
  std::lock_guard lock(*mutex_);
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

std::string format_event(const Event& e) {
  std::string out;
  out.reserve(96);
  out += std::to_string(e.time_us);
  out += ' ';
  out += e.proc.empty() ? "-" : e.proc;
  out += ' ';
  out += e.op;
  out += ' ';
  out += std::to_string(e.key);
  out += ' ';
  out += std::to_string(e.token);
  out += ' ';
  out += e.status.empty() ? "-" : e.status;
  out += ' ';
  out += std::to_string(e.aux);
  return out;
}

namespace {

std::vector<std::string_view> split_words(std::string_view line) {
  std::vector<std::string_view> words;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    const std::size_t start = i;
    while (i < line.size() && line[i] != ' ') ++i;
    if (i > start) words.push_back(line.substr(start, i - start));
  }
  return words;
}

template <typename T>
bool parse_number(std::string_view text, T& out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

std::optional<Event> parse_event(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const std::vector<std::string_view> w = split_words(line);
  if (w.size() != 7) return std::nullopt;
  Event e;
  if (!parse_number(w[0], e.time_us)) return std::nullopt;
  e.proc = std::string(w[1]);
  e.op = std::string(w[2]);
  if (!parse_number(w[3], e.key)) return std::nullopt;
  if (!parse_number(w[4], e.token)) return std::nullopt;
  e.status = std::string(w[5]);
  if (!parse_number(w[6], e.aux)) return std::nullopt;
  return e;
}

void merge(std::vector<Event>& events) {
  std::stable_sort(events.begin(), events.end(), [](const Event& a, const Event& b) { return a.time_us < b.time_us; });
  for (std::size_t i = 0; i < events.size(); ++i) events[i].line = i + 1;
}

History read_history(const std::string& dir) {
  History h;
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".hist") files.push_back(entry.path());
  }
  if (ec) h.problems.push_back(dir + ": " + ec.message());
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    std::ifstream in(file);
    if (!in) {
      h.problems.push_back(file.string() + ": cannot read");
      continue;
    }
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(std::move(line));
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (lines[i].empty()) continue;
      auto e = parse_event(lines[i]);
      if (e) {
        h.events.push_back(std::move(*e));
      } else if (i + 1 != lines.size()) {
        h.problems.push_back(file.string() + ":" + std::to_string(i + 1) + ": malformed line '" + lines[i] + "'");
      }
    }
  }
  merge(h.events);
  return h;
}

}  // namespace idem::chaos
