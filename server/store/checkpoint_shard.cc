#include "server/store/checkpoint_shard.h"

#include <fcntl.h>
#include <google/protobuf/stubs/logging.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include "common/base/error.h"
#include "common/base/raw_arrays.h"
#include "fmps.pb.h"  // generated from common/proto/fmps.proto

namespace fmps {

namespace {

constexpr char kMagic[8] = {'F', 'M', 'P', 'S', 'S', 'H', 'D', '1'};
constexpr std::uint32_t kVersion = 1;
constexpr std::size_t kTargetChunkBytes = std::size_t{8} << 20;  // payload per chunk record
constexpr std::uint32_t kMaxRecordBytes = 1u << 30;
constexpr std::uint32_t kMaxStateFloats = 64;

std::string ErrnoText(int e) { return std::strerror(e); }

// Concatenates strings and numbers (avoids "literal" + std::to_string(x), on which GCC 12
// gives a false -Wrestrict).
template <typename... Args>
std::string Cat(const Args&... args) {
  std::string out;
  auto add = [&out](const auto& a) {
    if constexpr (std::is_arithmetic_v<std::decay_t<decltype(a)>>) {
      out += std::to_string(a);
    } else {
      out += a;
    }
  };
  (add(args), ...);
  return out;
}

// The model shape a header records (not validated; CheckHeader does).
ModelShape ShapeOf(const pb::ShardHeader& h) {
  return {static_cast<ModelKind>(h.kind()), static_cast<int>(h.k()), static_cast<int>(h.fields())};
}

// Floats of one v in the header's chunks (k for FM).
std::size_t VWidth(const pb::ShardHeader& h) {
  return static_cast<std::size_t>(ShapeOf(h).v_width());
}

// Payload bytes of one key in a chunk (v counted as present).
std::size_t KeyBytes(const pb::ShardHeader& h) {
  const std::size_t k = VWidth(h);
  const std::size_t s = h.state_floats();
  return sizeof(Key) + sizeof(float) * (1 + s) + (h.step_counters() ? 8 : 0) +
         (h.min_count() > 1 ? 4 : 0) + 1 + sizeof(float) * k * (1 + s);
}

// ---- writing ----

// An open temp file; every byte written goes through the running XXH3.
class HashedFile {
 public:
  explicit HashedFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw IoError("cannot write " + path + ": " + ErrnoText(errno));
    XXH3_64bits_reset(&hash_);
  }
  ~HashedFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  HashedFile(const HashedFile&) = delete;
  HashedFile& operator=(const HashedFile&) = delete;

  void Write(const void* data, std::size_t n) {
    XXH3_64bits_update(&hash_, data, n);
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t got = ::write(fd_, p, n);
      if (got < 0) {
        if (errno == EINTR) continue;
        throw IoError("cannot write " + path_ + ": " + ErrnoText(errno));
      }
      p += got;
      n -= static_cast<std::size_t>(got);
      bytes_ += static_cast<std::uint64_t>(got);
    }
  }

  // `rec` = 4 placeholder bytes followed by a serialized message: fills in the length.
  void WriteRecord(std::string* rec) {
    const std::size_t n = rec->size() - 4;
    if (n > kMaxRecordBytes) throw IoError("cannot write " + path_ + ": record too large");
    for (int i = 0; i < 4; ++i) (*rec)[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    Write(rec->data(), rec->size());
  }

  void SyncAndClose() {
    if (::fsync(fd_) != 0) throw IoError("cannot fsync " + path_ + ": " + ErrnoText(errno));
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw IoError("cannot close " + path_ + ": " + ErrnoText(errno));
  }

  std::uint64_t digest() const { return XXH3_64bits_digest(&hash_); }
  std::uint64_t bytes() const { return bytes_; }

 private:
  std::string path_;
  int fd_ = -1;
  XXH3_state_t hash_;
  std::uint64_t bytes_ = 0;
};

// Serializes `m` into *rec after 4 bytes reserved for the length.
void Serialize(const google::protobuf::MessageLite& m, std::string* rec) {
  rec->assign(4, '\0');
  if (!m.AppendToString(rec)) throw std::logic_error("checkpoint shard: serialization failed");
}

void SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw IoError("cannot open directory " + dir + ": " + ErrnoText(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw IoError("cannot fsync directory " + dir + ": " + ErrnoText(err));
}

template <typename T>
void Put(std::string* s, std::size_t index, const T& value) {
  std::memcpy(s->data() + index * sizeof(T), &value, sizeof(T));
}

// Fills c with snapshot keys [begin, end).
void FillChunk(const StoreSnapshot& snap, const pb::ShardHeader& h, std::size_t begin,
               std::size_t end, pb::ShardChunk* c) {
  const std::size_t n = end - begin;
  const std::size_t k = VWidth(h);
  const std::size_t s = h.state_floats();
  const bool steps = h.step_counters();
  const bool counts = h.min_count() > 1;
  std::string* keys = c->mutable_keys();
  std::string* w = c->mutable_w();
  std::string* w_state = c->mutable_w_state();
  std::string* step = c->mutable_steps();
  std::string* count = c->mutable_counts();
  std::string* has_v = c->mutable_has_v();
  std::string* v = c->mutable_v();
  std::string* v_state = c->mutable_v_state();
  keys->resize(n * sizeof(Key));
  w->resize(n * sizeof(float));
  w_state->resize(n * s * sizeof(float));
  step->resize(steps ? n * 8 : 0);
  count->resize(counts ? n * 4 : 0);
  has_v->resize(n);
  v->resize(n * k * sizeof(float));
  v_state->resize(n * k * s * sizeof(float));
  const std::size_t v_bytes = k * sizeof(float);
  const std::size_t vs_bytes = k * s * sizeof(float);
  std::size_t m = 0;
  for (std::size_t j = 0; j < n; ++j) {
    const KeyRecord r = snap.record(begin + j);
    Put(keys, j, r.key);
    Put(w, j, r.w);
    if (s > 0) std::memcpy(w_state->data() + j * s * sizeof(float), r.w_state, s * sizeof(float));
    if (steps) {
      Put(step, 2 * j, r.step_w);
      Put(step, 2 * j + 1, r.step_v);
    }
    if (counts) Put(count, j, r.count);
    (*has_v)[j] = r.v != nullptr ? 1 : 0;
    if (r.v != nullptr) {
      std::memcpy(v->data() + m * v_bytes, r.v, v_bytes);
      if (s > 0) std::memcpy(v_state->data() + m * vs_bytes, r.v_state, vs_bytes);
      ++m;
    }
  }
  v->resize(m * v_bytes);
  v_state->resize(m * vs_bytes);
}

// ---- reading ----

class ShardReader {
 public:
  explicit ShardReader(const std::string& path) : path_(path) {
    file_ = std::fopen(path.c_str(), "rb");
    if (file_ == nullptr)
      throw IoError("cannot open checkpoint shard " + path + ": " + ErrnoText(errno));
    struct stat st;
    if (::fstat(fileno(file_), &st) != 0) {
      const int err = errno;
      std::fclose(file_);
      throw IoError("cannot stat " + path + ": " + ErrnoText(err));
    }
    size_ = static_cast<std::uint64_t>(st.st_size);
  }
  ~ShardReader() { std::fclose(file_); }
  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;

  std::uint64_t size() const { return size_; }

  [[noreturn]] void Fail(const std::string& what) const {
    throw ModelError("checkpoint shard " + path_ + ": " + what);
  }

  // Reads the file from its start, validating everything; calls apply(header, chunk) for
  // every chunk that holds keys when apply is set. Returns the header; *digest = XXH3-64 of
  // the whole file.
  pb::ShardHeader Scan(
      const std::function<void(const pb::ShardHeader&, const pb::ShardChunk&)>& apply,
      std::uint64_t* digest) {
    if (std::fseek(file_, 0, SEEK_SET) != 0) Fail(Cat("cannot seek: ", ErrnoText(errno)));
    XXH3_64bits_reset(&hash_);
    offset_ = 0;
    char magic[sizeof(kMagic)];
    if (!ReadExact(magic, sizeof(magic))) Fail("truncated (no magic)");
    if (std::memcmp(magic, kMagic, sizeof(kMagic)) != 0) Fail("not a checkpoint shard (bad magic)");
    if (!ReadRecord()) Fail("truncated (no header)");
    pb::ShardHeader h;
    {
      google::protobuf::LogSilencer quiet;  // a damaged string field: our one-line error only
      if (!h.ParseFromString(rec_)) Fail("corrupt header record");
    }
    CheckHeader(h);
    std::uint64_t keys = 0;
    std::uint64_t embedded = 0;
    for (std::uint64_t index = 0;; ++index) {
      const std::uint64_t before = XXH3_64bits_digest(&hash_);
      const std::uint64_t at = offset_;
      if (!ReadRecord()) Fail("truncated (no final record)");
      if (!chunk_.ParseFromString(rec_)) {
        Fail(Cat("corrupt chunk record ", index, " at byte ", at));
      }
      if (chunk_.last()) {
        if (!chunk_.keys().empty()) Fail("final record holds keys");
        if (chunk_.checksum() != before) Fail("checksum mismatch (self-check of the file)");
        // The checksum does not cover this record: its bytes must be the canonical encoding
        // (e.g. last = 0x5b would parse as true).
        if (chunk_.SerializeAsString() != rec_) Fail("corrupt final record");
        break;
      }
      embedded += CheckChunk(h, chunk_, index);
      keys += chunk_.keys().size() / sizeof(Key);
      if (apply) apply(h, chunk_);
    }
    char extra;
    if (ReadExact(&extra, 1)) Fail("trailing bytes after the final record");
    if (keys != h.num_keys() || embedded != h.num_embedded()) {
      Fail(Cat("holds ", keys, " keys (", embedded, " embedded), header says ", h.num_keys(), " (",
               h.num_embedded(), ")"));
    }
    *digest = XXH3_64bits_digest(&hash_);
    return h;
  }

 private:
  // False on a clean end of file before any byte; Fail on a partial read.
  bool ReadExact(void* out, std::size_t n) {
    const std::size_t got = std::fread(out, 1, n, file_);
    if (std::ferror(file_)) throw IoError("cannot read " + path_ + ": " + ErrnoText(errno));
    if (got == 0 && n > 0) return false;
    if (got != n) Fail(Cat("truncated at byte ", offset_ + got));
    XXH3_64bits_update(&hash_, out, n);
    offset_ += n;
    return true;
  }

  bool ReadRecord() {
    unsigned char len[4];
    if (!ReadExact(len, 4)) return false;
    const std::uint32_t n =
        len[0] | (len[1] << 8) | (len[2] << 16) | (static_cast<std::uint32_t>(len[3]) << 24);
    if (n > kMaxRecordBytes || offset_ + n > size_) {
      Fail(offset_ + n > size_
               ? Cat("truncated (record of ", n, " bytes at byte ", offset_ - 4, " passes the end)")
               : std::string("corrupt record length"));
    }
    rec_.resize(n);
    if (n > 0 && !ReadExact(rec_.data(), n)) Fail("truncated (record body)");
    return true;
  }

  void CheckHeader(const pb::ShardHeader& h) const {
    if (h.version() != kVersion) Fail(Cat("unsupported version ", h.version()));
    try {
      ShapeOf(h).Validate("header");
    } catch (const ModelError& e) {
      Fail(e.what());
    }
    if (h.state_floats() > kMaxStateFloats) Fail("bad state_floats in header");
  }

  // Validates the sizes of a chunk's arrays; returns its number of keys with a v.
  std::uint64_t CheckChunk(const pb::ShardHeader& h, const pb::ShardChunk& c,
                           std::uint64_t index) const {
    const std::uint64_t n = c.keys().size() / sizeof(Key);
    const std::uint64_t s = h.state_floats();
    const std::uint64_t k = VWidth(h);
    std::uint64_t m = 0;
    for (const char b : c.has_v()) {
      if (b != 0 && b != 1) Fail(Cat("corrupt chunk ", index, " (has_v)"));
      m += static_cast<std::uint64_t>(b);
    }
    const bool ok = c.keys().size() % sizeof(Key) == 0 && c.w().size() == n * 4 &&
                    c.w_state().size() == n * s * 4 &&
                    c.steps().size() == (h.step_counters() ? n * 8 : 0) &&
                    c.counts().size() == (h.min_count() > 1 ? n * 4 : 0) && c.has_v().size() == n &&
                    c.v().size() == m * k * 4 && c.v_state().size() == m * k * s * 4;
    if (!ok) Fail(Cat("corrupt chunk ", index, " (array sizes do not match)"));
    return m;
  }

  std::string path_;
  std::FILE* file_ = nullptr;
  std::uint64_t size_ = 0;
  std::uint64_t offset_ = 0;
  XXH3_state_t hash_;
  std::string rec_;
  pb::ShardChunk chunk_;
};

// Restores the keys of chunk c kept by `keep` into store; returns how many.
std::uint64_t ApplyChunk(const pb::ShardHeader& h, const pb::ShardChunk& c, ParamStore* store,
                         const std::function<bool(Key)>& keep) {
  const std::size_t n = c.keys().size() / sizeof(Key);
  const std::size_t k = VWidth(h);
  const std::size_t s = h.state_floats();
  const bool steps = h.step_counters();
  const bool counts = h.min_count() > 1;
  const auto* w = reinterpret_cast<const float*>(c.w().data());
  const auto* w_state = reinterpret_cast<const float*>(c.w_state().data());
  const auto* v = reinterpret_cast<const float*>(c.v().data());
  const auto* v_state = reinterpret_cast<const float*>(c.v_state().data());
  std::uint64_t restored = 0;
  std::size_t m = 0;  // index of the next v
  for (std::size_t j = 0; j < n; ++j) {
    KeyRecord r;
    std::memcpy(&r.key, c.keys().data() + j * sizeof(Key), sizeof(Key));
    const bool has_v = c.has_v()[j] != 0;
    const std::size_t vi = m;
    if (has_v) ++m;
    if (keep && !keep(r.key)) continue;
    r.w = w[j];
    r.w_state = w_state + j * s;
    if (has_v) {
      r.v = v + vi * k;
      r.v_state = v_state + vi * k * s;
    }
    if (steps) {
      std::memcpy(&r.step_w, c.steps().data() + 8 * j, 4);
      std::memcpy(&r.step_v, c.steps().data() + 8 * j + 4, 4);
    }
    if (counts) std::memcpy(&r.count, c.counts().data() + 4 * j, 4);
    store->Restore(r);
    ++restored;
  }
  return restored;
}

std::string Hex(std::uint64_t x) {
  char buf[19];
  std::snprintf(buf, sizeof(buf), "0x%016llx", static_cast<unsigned long long>(x));
  return buf;
}

}  // namespace

ShardFileInfo WriteShardFile(const StoreSnapshot& snap, const std::string& path) {
  static std::atomic<std::uint64_t> counter{0};
  std::string tmp = path + ".tmp.";
  tmp += std::to_string(::getpid());
  tmp += '.';
  tmp += std::to_string(counter.fetch_add(1));
  const StoreFormat& f = snap.format();
  pb::ShardHeader h;
  h.set_version(kVersion);
  h.set_k(static_cast<std::uint32_t>(f.shape.k));
  h.set_kind(static_cast<std::uint32_t>(f.shape.kind));
  h.set_fields(static_cast<std::uint32_t>(f.shape.fields));
  h.set_optimizer(f.optimizer);
  h.set_state_floats(static_cast<std::uint32_t>(f.state_floats));
  h.set_step_counters(f.step_counters);
  h.set_min_count(f.min_count);
  h.set_num_keys(snap.size());
  h.set_num_embedded(snap.embedded());
  h.set_seed(f.seed);
  h.set_init_std(f.init_std);
  ShardFileInfo info;
  try {
    HashedFile file(tmp);
    file.Write(kMagic, sizeof(kMagic));
    std::string rec;
    Serialize(h, &rec);
    file.WriteRecord(&rec);
    const std::size_t per_chunk = std::max<std::size_t>(1, kTargetChunkBytes / KeyBytes(h));
    pb::ShardChunk c;
    for (std::size_t begin = 0; begin < snap.size(); begin += per_chunk) {
      FillChunk(snap, h, begin, std::min(snap.size(), begin + per_chunk), &c);
      Serialize(c, &rec);
      file.WriteRecord(&rec);
    }
    c.Clear();
    c.set_last(true);
    c.set_checksum(file.digest());
    Serialize(c, &rec);
    file.WriteRecord(&rec);
    file.SyncAndClose();
    info.bytes = file.bytes();
    info.checksum = file.digest();
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
      throw IoError("cannot rename " + tmp + " to " + path + ": " + ErrnoText(errno));
    }
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  SyncDirectory(parent.empty() ? std::string(".") : parent.string());
  info.path = path;
  info.keys = snap.size();
  return info;
}

std::uint64_t LoadShardFile(const std::string& path, const ShardFileInfo* expected,
                            ParamStore* store, const std::function<bool(Key)>& keep) {
  ShardReader reader(path);
  if (expected != nullptr && reader.size() != expected->bytes) {
    reader.Fail(Cat("size ", reader.size(), " bytes, expected ", expected->bytes,
                    " (truncated or replaced)"));
  }
  // Pass 1: the whole file is read and validated before the store is touched.
  std::uint64_t digest = 0;
  const pb::ShardHeader h = reader.Scan(nullptr, &digest);
  if (expected != nullptr && digest != expected->checksum) {
    reader.Fail(
        Cat("checksum mismatch: file has ", Hex(digest), ", expected ", Hex(expected->checksum)));
  }
  if (expected != nullptr && h.num_keys() != expected->keys) {
    reader.Fail(Cat("holds ", h.num_keys(), " keys, expected ", expected->keys));
  }
  const StoreFormat& f = store->format();
  if (ShapeOf(h) != f.shape) {
    reader.Fail("saved with model shape " + ShapeOf(h).ToString() + " but the store has " +
                f.shape.ToString());
  }
  if (h.optimizer() != f.optimizer) {
    reader.Fail("saved with optimizer " + h.optimizer() + " but the store uses " + f.optimizer);
  }
  if (static_cast<int>(h.state_floats()) != f.state_floats ||
      h.step_counters() != f.step_counters) {
    reader.Fail(Cat("saved with ", h.state_floats(), " optimizer state floats per parameter",
                    h.step_counters() ? " and step counters" : "", " but the store has ",
                    f.state_floats, f.step_counters ? " and step counters" : ""));
  }
  // Pass 2: apply (the same validation again; the file is expected not to have changed).
  std::uint64_t restored = 0;
  std::uint64_t digest2 = 0;
  reader.Scan([&](const pb::ShardHeader& header,
                  const pb::ShardChunk& c) { restored += ApplyChunk(header, c, store, keep); },
              &digest2);
  if (digest2 != digest) reader.Fail("changed while it was being loaded");
  return restored;
}

std::string CheckpointPath(const std::string& dir, std::uint64_t seq) {
  char name[32];
  std::snprintf(name, sizeof(name), "ckpt-%08llu", static_cast<unsigned long long>(seq));
  return dir + "/" + name;
}

std::string ShardFileName(int server) { return "shard-" + std::to_string(server) + ".bin"; }

}  // namespace fmps
