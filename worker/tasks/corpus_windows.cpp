#include "worker/tasks/corpus_windows.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "worker/base/error.h"

namespace memsweep {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A file read through one buffer with pread: the bytes asked for stay valid until the next call. Sequential reads
// refill it a chunk at a time.
class BufferedFile {
 public:
  explicit BufferedFile(const std::string& path) : path_(path), fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd_ < 0) throw Error("cannot open " + path + " for reading: " + std::strerror(errno));
    struct stat info {};
    if (fstat(fd_, &info) != 0) throw Error("cannot stat " + path + ": " + std::strerror(errno));
    size_ = uint64_t(info.st_size);
  }
  ~BufferedFile() { ::close(fd_); }
  BufferedFile(const BufferedFile&) = delete;
  BufferedFile& operator=(const BufferedFile&) = delete;
  uint64_t size() const { return size_; }
  const uint8_t* bytes(uint64_t offset, uint64_t count) {
    if (offset < start_ || offset + count > start_ + buffer_.size()) {
      buffer_.resize(size_t(std::min<uint64_t>(std::max<uint64_t>(count, kChunk), size_ - offset)));
      for (uint64_t done = 0; done < buffer_.size();) {
        const ssize_t got = pread(fd_, buffer_.data() + done, buffer_.size() - done, off_t(offset + done));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) throw Error("reading " + path_ + " at byte " + std::to_string(offset + done) + " failed: " +
                                  (got < 0 ? std::strerror(errno) : "the file ended early"));
        done += uint64_t(got);
      }
      start_ = offset;
    }
    return buffer_.data() + (offset - start_);
  }

 private:
  static constexpr uint64_t kChunk = uint64_t(4) << 20;
  std::string path_;
  int fd_;
  uint64_t size_ = 0, start_ = 0;
  std::vector<uint8_t> buffer_;
};

// A raw stream of little-endian uint16 or uint32 ids: one row.
class StreamWindows : public CorpusWindows {
 public:
  StreamWindows(const std::string& path, int width, int64_t vocab_size, int64_t length, int64_t stride)
      : CorpusWindows(path, vocab_size, length, stride), file_(path), width_(width) {
    if (file_.size() % uint64_t(width) != 0)
      throw Error(path + ": " + std::to_string(file_.size()) + " bytes is not a whole number of " + (width == 2 ? "uint16" : "uint32") +
                  " tokens (a truncated or mislabelled stream?)");
    count_ = windows_in(int64_t(file_.size() / uint64_t(width)));
  }
  Window at(int64_t index) override {
    Window window;
    window.offset = index * stride_;
    const uint8_t* bytes = file_.bytes(uint64_t(window.offset) * uint64_t(width_), uint64_t(length_) * uint64_t(width_));
    window.tokens.resize(size_t(length_));
    for (int64_t t = 0; t < length_; ++t) {
      uint32_t value = 0;
      std::memcpy(&value, bytes + t * width_, size_t(width_));
      check_token_id(int64_t(value), vocab_size_, path_ + ": token " + std::to_string(window.offset + t));
      window.tokens[size_t(t)] = int64_t(value);
    }
    return window;
  }

 private:
  BufferedFile file_;
  int width_;
};

// A 2-D .npy array: each row cut into windows.
class NpyWindows : public CorpusWindows {
 public:
  NpyWindows(const std::string& path, int64_t vocab_size, int64_t length, int64_t stride)
      : CorpusWindows(path, vocab_size, length, stride), file_(path) {
    // The header as parse_npy_header checks it; the data's place and shape are all that is kept of it.
    const uint64_t head = std::min<uint64_t>(file_.size(), 12);
    const uint8_t* start = file_.bytes(0, head);
    uint64_t header_bytes = head;
    if (head >= 10 && start[6] == 1) header_bytes = 10 + (start[8] | (uint64_t(start[9]) << 8));
    else if (head >= 12) header_bytes = 12 + (start[8] | (uint64_t(start[9]) << 8) | (uint64_t(start[10]) << 16) | (uint64_t(start[11]) << 24));
    header_bytes = std::min(header_bytes, file_.size());
    const uint8_t* bytes = file_.bytes(0, header_bytes);
    const NpyArray array = parse_npy_header(bytes, header_bytes, path, /*check_data=*/false);  // the data's length: below
    data_start_ = header_bytes, rows_ = array.rows, columns_ = array.columns, element_size_ = array.element_size,
    is_signed_ = array.is_signed;
    if (uint64_t(rows_) * uint64_t(columns_) * uint64_t(element_size_) > file_.size() - data_start_)
      throw Error(path + ": data holds " + std::to_string(file_.size() - data_start_) + " bytes, fewer than its shape (" +
                  std::to_string(rows_) + ", " + std::to_string(columns_) + ") needs (truncated?)");
    per_row_ = windows_in(columns_);
    count_ = rows_ * per_row_;
  }
  Window at(int64_t index) override {
    Window window;
    window.row = index / per_row_;
    window.offset = (index % per_row_) * stride_;
    const uint64_t first = data_start_ + uint64_t(window.row * columns_ + window.offset) * uint64_t(element_size_);
    NpyArray view;
    view.data = file_.bytes(first, uint64_t(length_) * uint64_t(element_size_));
    view.rows = 1, view.columns = length_, view.element_size = element_size_, view.is_signed = is_signed_;
    window.tokens.resize(size_t(length_));
    for (int64_t t = 0; t < length_; ++t) {
      window.tokens[size_t(t)] = view.at(0, t);
      check_token_id(window.tokens[size_t(t)], vocab_size_,
                     path_ + ": row " + std::to_string(window.row) + ", column " + std::to_string(window.offset + t));
    }
    return window;
  }

 private:
  BufferedFile file_;
  uint64_t data_start_ = 0;
  int64_t rows_ = 0, columns_ = 0, per_row_ = 0;
  int element_size_ = 0;
  bool is_signed_ = false;
};

// JSONL rows: read once to number the windows (a line's place and first window are kept), then each row re-read
// when its windows are.
class JsonlWindows : public CorpusWindows {
 public:
  JsonlWindows(const std::string& path, int64_t vocab_size, const TextEncoder& encode, int64_t length, int64_t stride)
      : CorpusWindows(path, vocab_size, length, stride), encode_(encode), in_(path) {
    if (!in_) throw Error("cannot open " + path + " for reading");
    std::string line;
    std::streamoff at = 0;
    for (int64_t number = 1; std::getline(in_, line); ++number) {
      const std::streamoff start = at;
      at = in_.tellg();
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const int64_t windows = windows_in(int64_t(parse_jsonl_row(line, where(number), vocab_size_, encode_).size()));
      if (windows == 0) continue;
      rows_.push_back({number, start, count_});
      count_ += windows;
    }
    in_.clear();
  }
  Window at(int64_t index) override {
    const auto row = std::upper_bound(rows_.begin(), rows_.end(), index, [](int64_t i, const Row& r) { return i < r.first_window; }) - 1;
    if (row->line != cached_line_) {
      in_.seekg(row->start);
      std::string line;
      std::getline(in_, line);
      cached_ = parse_jsonl_row(line, where(row->line), vocab_size_, encode_);
      cached_line_ = row->line;
    }
    Window window;
    window.row = row->line;
    window.offset = (index - row->first_window) * stride_;
    window.tokens.assign(cached_.begin() + window.offset, cached_.begin() + window.offset + length_);
    return window;
  }

 private:
  struct Row {
    int64_t line;
    std::streamoff start;
    int64_t first_window;
  };
  std::string where(int64_t line) const { return path_ + ", line " + std::to_string(line); }
  TextEncoder encode_;
  std::ifstream in_;
  std::vector<Row> rows_;
  int64_t cached_line_ = -1;
  std::vector<int64_t> cached_;
};

}  // namespace

std::unique_ptr<CorpusWindows> CorpusWindows::open(const std::string& path, const std::string& format, int64_t vocab_size,
                                                   const TextEncoder& encode, int64_t length, int64_t stride) {
  if (length < 1 || stride < 1) throw Error("windows need a length and a stride of at least 1");
  if (format == "uint16" || (format.empty() && ends_with(path, ".u16"))) return std::make_unique<StreamWindows>(path, 2, vocab_size, length, stride);
  if (format == "uint32" || (format.empty() && ends_with(path, ".u32"))) return std::make_unique<StreamWindows>(path, 4, vocab_size, length, stride);
  if (!format.empty()) throw Error(path + ": raw token format '" + format + "' unknown (uint16 or uint32)");
  if (ends_with(path, ".npy")) return std::make_unique<NpyWindows>(path, vocab_size, length, stride);
  if (ends_with(path, ".jsonl") || ends_with(path, ".json")) return std::make_unique<JsonlWindows>(path, vocab_size, encode, length, stride);
  throw Error(path + ": unknown corpus type (.u16/.u32 streams, .npy, .jsonl; or --format uint16|uint32)");
}

}  // namespace memsweep
