// End-to-end tests of the shazip binary: round trips through files and pipes,
// the flags users rely on, and every documented error with its exit code and
// no output left behind. Inputs are generated here.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "src/container.h"
#include "src/crc32.h"

#ifndef SHAZIP_BIN
#error "SHAZIP_BIN must name the shazip executable"
#endif

namespace {

const std::string kBin = SHAZIP_BIN;

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/shazip-cli-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
  // Names of every entry, to prove that nothing (temporary files included) was left.
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    FILE* p = popen(("ls -A '" + path + "'").c_str(), "r");
    char line[4096];
    while (p && std::fgets(line, sizeof line, p)) {
      std::string s(line);
      if (!s.empty() && s.back() == '\n') s.pop_back();
      out.push_back(s);
    }
    if (p) pclose(p);
    return out;
  }
  std::string path;
};

int run(const std::string& cmd) {
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string capture(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t got;
  while (p && (got = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, got);
  if (p) pclose(p);
  return out;
}

std::vector<uint8_t> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void spit(const std::string& path, const std::vector<uint8_t>& data) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

std::vector<uint8_t> english(size_t n, uint64_t seed) {
  const char* words[] = {"the ",   "of ",   "and ",     "to ",     "a ",      "in ",    "compression ",
                         "model ", "byte ", "network ", "learns ", "while ",  "it ",    "codes ",
                         "every ", "file ", "that ",    "is ",     "small. ", "Text\n", "data, "};
  std::mt19937_64 rng(seed);
  std::string s;
  while (s.size() < n) s += words[rng() % 21];
  s.resize(n);
  return std::vector<uint8_t>(s.begin(), s.end());
}

// n random bytes: data no model shrinks.
std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

std::string q(const std::string& s) { return "'" + s + "'"; }

// Compresses `text` as dir/name with preset 1 and returns the archive with its
// parsed header.
struct SmallArchive {
  std::vector<uint8_t> bytes;
  shazip::Header header;
  size_t header_size = 0;
};
SmallArchive make_archive(const TempDir& dir, const std::string& name, const std::vector<uint8_t>& text) {
  spit(dir / name, text);
  REQUIRE(run(kBin + " -q -1 " + q(dir / name)) == 0);
  SmallArchive a;
  a.bytes = slurp(dir / (name + ".shz"));
  a.header = shazip::parse_header(a.bytes.data(), a.bytes.size(), &a.header_size);
  return a;
}

// Just enough JSON to check the benchmark's output: a strict recursive-descent
// parser that throws on anything malformed.
struct Json {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> fields;
  const Json* get(const std::string& key) const {
    for (const auto& [k, v] : fields)
      if (k == key) return &v;
    return nullptr;
  }
};

class JsonParser {
 public:
  explicit JsonParser(const std::string& text) : s_(text) {}
  Json parse() {
    Json v = value();
    space();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& why) {
    throw std::runtime_error("JSON: " + why + " at " + std::to_string(i_));
  }
  void space() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool eat(char c) {
    space();
    if (i_ < s_.size() && s_[i_] == c) return ++i_, true;
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(std::string("expected ") + c);
  }
  std::string str() {
    expect('"');
    std::string out;
    while (i_ < s_.size() && s_[i_] != '"') {
      if (s_[i_] == '\\') {
        if (++i_ >= s_.size()) fail("bad escape");
        const char e = s_[i_];
        if (e == 'u') {
          if (i_ + 4 >= s_.size()) fail("bad \\u");
          out += static_cast<char>(std::stoi(s_.substr(i_ + 1, 4), nullptr, 16));
          i_ += 4;
        } else if (e == '"' || e == '\\' || e == '/') {
          out += e;
        } else if (e == 'n') {
          out += '\n';
        } else {
          fail("unknown escape");
        }
        ++i_;
      } else {
        if (static_cast<unsigned char>(s_[i_]) < 0x20) fail("control character in string");
        out += s_[i_++];
      }
    }
    expect('"');
    return out;
  }
  Json value() {
    space();
    if (i_ >= s_.size()) fail("unexpected end");
    Json v;
    const char c = s_[i_];
    if (c == '{') {
      v.kind = Json::kObject;
      ++i_;
      if (eat('}')) return v;
      do {
        std::string k = str();
        expect(':');
        v.fields.emplace_back(std::move(k), value());
      } while (eat(','));
      expect('}');
    } else if (c == '[') {
      v.kind = Json::kArray;
      ++i_;
      if (eat(']')) return v;
      do v.items.push_back(value());
      while (eat(','));
      expect(']');
    } else if (c == '"') {
      v.kind = Json::kString;
      v.string = str();
    } else if (s_.compare(i_, 4, "true") == 0 || s_.compare(i_, 5, "false") == 0) {
      v.kind = Json::kBool;
      v.boolean = s_[i_] == 't';
      i_ += v.boolean ? 4 : 5;
    } else if (s_.compare(i_, 4, "null") == 0) {
      i_ += 4;
    } else {
      size_t used = 0;
      try {
        v.number = std::stod(s_.substr(i_, 40), &used);
      } catch (const std::exception&) {
        fail("bad value");
      }
      if (used == 0 || !(std::isdigit(static_cast<unsigned char>(c)) || c == '-')) fail("bad number");
      v.kind = Json::kNumber;
      i_ += used;
    }
    return v;
  }
  const std::string& s_;
  size_t i_ = 0;
};

}  // namespace

TEST_CASE("file round trip keeps the input and restores it exactly", "[cli]") {
  TempDir dir;
  const auto text = english(20000, 1);
  spit(dir / "a.txt", text);
  REQUIRE(run(kBin + " -q " + q(dir / "a.txt")) == 0);
  REQUIRE(slurp(dir / "a.txt") == text);
  const auto archive = slurp(dir / "a.txt.shz");
  CHECK(archive.size() < text.size() / 2);
  REQUIRE(run("mv " + q(dir / "a.txt") + " " + q(dir / "orig")) == 0);
  REQUIRE(run(kBin + " -q -d " + q(dir / "a.txt.shz")) == 0);
  CHECK(slurp(dir / "a.txt") == text);
  CHECK(run(kBin + " -q -t " + q(dir / "a.txt.shz")) == 0);
}

TEST_CASE("pipes: standard input to standard output and back", "[cli]") {
  TempDir dir;
  const auto text = english(9000, 2);
  spit(dir / "in", text);
  REQUIRE(run("cat " + q(dir / "in") + " | " + kBin + " -q -1 | " + kBin + " -q -d > " + q(dir / "out")) == 0);
  CHECK(slurp(dir / "out") == text);
  REQUIRE(run(kBin + " -q -1 -c " + q(dir / "in") + " > " + q(dir / "c.shz")) == 0);
  REQUIRE(run(kBin + " -q -d -c " + q(dir / "c.shz") + " > " + q(dir / "c.out")) == 0);
  CHECK(slurp(dir / "c.out") == text);
  REQUIRE(run(kBin + " -q -1 " + q(dir / "in") + " -o " + q(dir / "named.shz")) == 0);
  REQUIRE(run(kBin + " -q -d " + q(dir / "named.shz") + " -o " + q(dir / "named.out")) == 0);
  CHECK(slurp(dir / "named.out") == text);
}

TEST_CASE("progress lines for a log (--progress) where standard error is no terminal", "[cli]") {
  TempDir dir;
  const auto text = english(30000, 3);
  spit(dir / "p", text);
  // Every line ends in a newline: no carriage returns or escape codes.
  auto plain_lines = [](const std::string& log) {
    return log.find('\r') == std::string::npos && log.find('\033') == std::string::npos &&
           (log.empty() || log.back() == '\n');
  };
  // Without --progress nothing is shown where standard error is no terminal.
  REQUIRE(run(kBin + " -q -1 -c " + q(dir / "p") + " > " + q(dir / "a.shz") + " 2> " + q(dir / "quiet")) == 0);
  CHECK(slurp(dir / "quiet").empty());
  // With it, even with -q: at least the last line (100%), with the speed and
  // the running bits per character; the archive is the same.
  REQUIRE(run(kBin + " -q --progress -1 -c " + q(dir / "p") + " > " + q(dir / "b.shz") + " 2> " + q(dir / "log")) == 0);
  const std::string log = capture("cat " + q(dir / "log"));
  CHECK(plain_lines(log));
  CHECK(log.find("p: 100.0%") != std::string::npos);
  CHECK(log.find("KB/s") != std::string::npos);
  CHECK(log.find(" bpc") != std::string::npos);
  CHECK(slurp(dir / "b.shz") == slurp(dir / "a.shz"));
  // Decoding shows its own.
  REQUIRE(run(kBin + " -q --progress -d -c " + q(dir / "b.shz") + " > " + q(dir / "back") + " 2> " + q(dir / "dlog")) ==
          0);
  CHECK(slurp(dir / "back") == text);
  const std::string dlog = capture("cat " + q(dir / "dlog"));
  CHECK(plain_lines(dlog));
  CHECK(dlog.find("b.shz: 100.0%") != std::string::npos);
  // The benchmark: each step as a line, the report on standard output alone.
  REQUIRE(run(kBin + " -b -q --progress --no-zstd --levels 1 " + q(dir / "p") + " > " + q(dir / "report") + " 2> " +
              q(dir / "blog")) == 0);
  const std::string blog = capture("cat " + q(dir / "blog"));
  CHECK(plain_lines(blog));
  CHECK(blog.find("p: shazip -1 compressing 100.0%") != std::string::npos);
  CHECK(blog.find("p: shazip -1 decompressing\n") != std::string::npos);
  CHECK(blog.find("p: shazip -1 decompressing 100.0%") != std::string::npos);
  CHECK(capture("cat " + q(dir / "report")).find("shazip -1") != std::string::npos);
}

TEST_CASE("shazip -l shows the header without decoding", "[cli]") {
  TempDir dir;
  spit(dir / "x", english(12000, 3));
  REQUIRE(run(kBin + " -q -1 " + q(dir / "x")) == 0);
  const std::string out = capture(kBin + " -l " + q(dir / "x.shz"));
  CHECK(out.find("neural (preset 1)") != std::string::npos);
  CHECK(out.find("original size    12000 bytes") != std::string::npos);
  CHECK(out.find("bits per char") != std::string::npos);
  CHECK(out.find("streams") != std::string::npos);
  CHECK(out.find("LibTorch") != std::string::npos);
  CHECK(out.find("CRC-32") != std::string::npos);

  // A CUDA archive names its GPU and CUDA runtime (kept in the BLAS and CPU
  // capability fields), not a CPU kernel set: its header, re-encoded, as
  // that of a GPU that trained on LibTorch (which it then needs).
  const SmallArchive a = make_archive(dir, "y", english(3000, 5));
  shazip::Header gpu = a.header;
  gpu.model.cuda_train_kernels = 0;
  gpu.backend.device = shazip::model::DeviceKind::kCuda;
  gpu.backend.torch_version = "2.11.0";
  gpu.backend.blas = "NVIDIA H100 80GB HBM3 sm_90";
  gpu.backend.cpu_capability = "CUDA 13.0";
  std::vector<uint8_t> forged = shazip::write_header(gpu);
  forged.insert(forged.end(), a.bytes.begin() + static_cast<long>(a.header_size), a.bytes.end());
  spit(dir / "gpu.shz", forged);
  const std::string listed = capture(kBin + " -l " + q(dir / "gpu.shz"));
  CHECK(listed.find("backend          cuda, LibTorch 2.11.0, GPU NVIDIA H100 80GB HBM3 sm_90, CUDA 13.0\n") !=
        std::string::npos);
  CHECK(listed.find("CPU capability") == std::string::npos);
}

TEST_CASE("shazip -v: the model after compressing and the output after decompressing", "[cli]") {
  TempDir dir;
  spit(dir / "x", english(12000, 3));
  const std::string plain = capture(kBin + " -1 -c " + q(dir / "x") + " 2>&1 >/dev/null");
  CHECK(std::count(plain.begin(), plain.end(), '\n') == 1);
  const std::string verbose = capture(kBin + " -1 -v -c " + q(dir / "x") + " 2>&1 >/dev/null");
  INFO(verbose);
  REQUIRE(std::count(verbose.begin(), verbose.end(), '\n') == 2);
  const std::string second = verbose.substr(verbose.find('\n') + 1);
  CHECK(second.rfind("  preset 1, SHA-RNN d=64 L=1 ", 0) == 0);
  CHECK(second.find(", 1 stream: the SHA-RNN alone ") != std::string::npos);
  double nn_bpc = 0;
  REQUIRE(std::sscanf(second.c_str() + second.find("alone "), "alone %lf bits per char", &nn_bpc) == 1);
  CHECK(nn_bpc > 1.0);
  CHECK(nn_bpc < 8.0);
  // Decompressing is silent but with -v, which says what it wrote.
  REQUIRE(run(kBin + " -q -1 " + q(dir / "x")) == 0);
  CHECK(capture(kBin + " -d -c " + q(dir / "x.shz") + " 2>&1 >/dev/null").empty());
  CHECK(capture(kBin + " -d -v -c " + q(dir / "x.shz") + " 2>&1 >/dev/null") ==
        dir / "x.shz" + ": 12000 bytes, (stdout)\n");
  CHECK(capture(kBin + " -d -v -f " + q(dir / "x.shz") + " 2>&1") == dir / "x.shz" + ": 12000 bytes, " + dir / "x\n");
  // Stored input has no model to name.
  spit(dir / "noise", random_bytes(5000, 9));
  const std::string stored = capture(kBin + " -v -c " + q(dir / "noise") + " 2>&1 >/dev/null");
  CHECK(std::count(stored.begin(), stored.end(), '\n') == 1);
  CHECK(stored.find(", stored)") != std::string::npos);
}

TEST_CASE("a GPU preset on the CPU says it is slow: once per run and not with -q", "[cli]") {
  TempDir dir;
  spit(dir / "t", english(300, 5));
  spit(dir / "u", english(300, 6));
  const std::string note = "is sized for a GPU";
  const auto count = [&](const std::string& text) {
    size_t n = 0;
    for (size_t at = text.find(note); at != std::string::npos; at = text.find(note, at + 1)) ++n;
    return n;
  };
  const std::string t = q(dir / "t"), u = q(dir / "u");
  const std::string two = capture(kBin + " --device cpu -6 -f " + t + " " + u + " 2>&1");
  CHECK(count(two) == 1);
  CHECK(two.find("preset 6") != std::string::npos);
  // With the advice that fits the machine (the CPU presets end at 5).
  CHECK((two.find("presets 1-5 suit a CPU") != std::string::npos || two.find("--device cuda") != std::string::npos));
  CHECK(count(capture(kBin + " --device cpu -6 -q -c " + t + " 2>&1 >/dev/null")) == 0);
  CHECK(count(capture(kBin + " --device cpu -5 -c " + t + " 2>&1 >/dev/null")) == 0);
  // It is a note: the archives are made and decode.
  REQUIRE(run(kBin + " -q -d -c " + q(dir / "u.shz") + " > " + q(dir / "back")) == 0);
  CHECK(slurp(dir / "back") == english(300, 6));
}

TEST_CASE("presets as zstd's -N alone or bundled with flags and never as an option's value or after --", "[cli]") {
  TempDir dir;
  spit(dir / "t", english(300, 7));
  const std::string t = q(dir / "t");
  REQUIRE(run(kBin + " -q --level 1 -c " + t + " > " + q(dir / "ref.shz")) == 0);
  const auto ref = slurp(dir / "ref.shz");
  REQUIRE(run(kBin + " -q -1 -c " + t + " > " + q(dir / "a.shz")) == 0);
  CHECK(slurp(dir / "a.shz") == ref);
  REQUIRE(run(kBin + " -1qc " + t + " > " + q(dir / "b.shz")) == 0);
  CHECK(slurp(dir / "b.shz") == ref);
  REQUIRE(run(kBin + " -kq1 -c " + t + " > " + q(dir / "c.shz")) == 0);
  CHECK(slurp(dir / "c.shz") == ref);
  // -o's value: a file named -9 (from the -1 preset), not preset 9.
  const std::string in_dir = "cd " + q(dir.path) + " && ";
  REQUIRE(run(in_dir + kBin + " -q -1 -o -9 t") == 0);
  CHECK(slurp(dir / "-9") == ref);
  // After --, -2 is a file.
  spit(dir / "-2", english(300, 7));
  REQUIRE(run(in_dir + kBin + " -q -1 -c -- -2 > d.shz") == 0);
  CHECK(slurp(dir / "d.shz") == ref);
  // Not a bundle of shazip's flags: left to CLI11, which takes it for a file.
  spit(dir / "-5.txt", english(300, 7));
  REQUIRE(run(in_dir + kBin + " -q -1 -c -5.txt > e.shz") == 0);
  CHECK(slurp(dir / "e.shz") == ref);
}

TEST_CASE("devices and pipes: coded with -c or -o and never removed by --rm", "[cli]") {
  TempDir dir;
  CHECK(capture(kBin + " -q -c /dev/null | " + kBin + " -q -d -c | wc -c") == "0\n");
  REQUIRE(mkfifo((dir / "fifo").c_str(), 0644) == 0);
  const std::string fifo = q(dir / "fifo");
  // FIFO.shz beside it: refused before anything opens the pipe (timeout: a
  // shazip that opened it would wait for a writer).
  CHECK(run("timeout 60 " + kBin + " -q " + fifo + " 2>/dev/null") == 1);
  REQUIRE(run("(printf 'through a pipe' > " + fifo + " &); " + kBin + " -q -1 --rm -o " + q(dir / "p.shz") + " " +
              fifo) == 0);
  struct stat st {};
  CHECK((stat((dir / "fifo").c_str(), &st) == 0 && S_ISFIFO(st.st_mode)));
  CHECK(capture(kBin + " -q -d -c " + q(dir / "p.shz")) == "through a pipe");
}

TEST_CASE("input removal (--rm) only after success, -f overwrites, no -f refuses", "[cli]") {
  TempDir dir;
  const auto text = english(5000, 4);
  spit(dir / "r", text);
  REQUIRE(run(kBin + " -q -1 --rm " + q(dir / "r")) == 0);
  CHECK_FALSE(std::ifstream(dir / "r").good());
  REQUIRE(run(kBin + " -q -d --rm " + q(dir / "r.shz")) == 0);
  CHECK(slurp(dir / "r") == text);
  CHECK_FALSE(std::ifstream(dir / "r.shz").good());

  spit(dir / "r.shz", {1, 2, 3});
  CHECK(run(kBin + " -q -1 " + q(dir / "r") + " 2>/dev/null") == 1);  // exists: refused
  CHECK(slurp(dir / "r.shz") == std::vector<uint8_t>{1, 2, 3});
  CHECK(dir.entries().size() == 2);  // no temporary left
  REQUIRE(run(kBin + " -q -1 -f " + q(dir / "r")) == 0);
  CHECK(slurp(dir / "r.shz").size() > 3);

  // The last of -k and --rm wins.
  REQUIRE(run(kBin + " -q -1 -f --rm -k " + q(dir / "r")) == 0);
  CHECK(std::ifstream(dir / "r").good());
  REQUIRE(run(kBin + " -q -1 -f -k --rm " + q(dir / "r")) == 0);
  CHECK_FALSE(std::ifstream(dir / "r").good());
}

TEST_CASE("recursive mode (-r): every file under a directory to its own archive and back", "[cli]") {
  TempDir dir;
  const std::string tree = dir / "tree";
  REQUIRE(run("mkdir -p " + q(tree + "/sub/deeper") + " " + q(tree + "/empty")) == 0);
  const auto a = english(3000, 11), b = english(2000, 12), c = english(1000, 13);
  spit(tree + "/a.txt", a);
  spit(tree + "/sub/b.txt", b);
  spit(tree + "/sub/deeper/c.txt", c);
  spit(tree + "/sub/old.shz", {9, 9, 9});  // an archive already: not compressed again
  REQUIRE(run("ln -s a.txt " + q(tree + "/link")) == 0);  // links inside the tree are skipped

  // Without -r a directory is refused with a hint, and nothing is written.
  CHECK(capture(kBin + " -q -1 " + q(tree) + " 2>&1").find("-r takes the files under it") != std::string::npos);
  CHECK(run(kBin + " -q -1 " + q(tree) + " 2>/dev/null") == 2);
  // -b too, without an empty table on standard output.
  CHECK(capture(kBin + " -b " + q(tree) + " 2>&1") ==
        "shazip: " + tree + ": is a directory (-r takes the files under it)\n");
  CHECK(run(kBin + " -b " + q(tree) + " >/dev/null 2>&1") == 2);
  CHECK(capture(kBin + " -b --json " + q(tree) + " 2>/dev/null") == "[\n]\n");  // still valid JSON
  CHECK(run(kBin + " -b --json " + q(tree) + " >/dev/null 2>&1") == 2);

  REQUIRE(run(kBin + " -q -1 -r --rm " + q(tree)) == 0);
  const std::string listing = capture("cd " + q(tree) + " && find . | sort");
  CHECK(listing ==
        ".\n./a.txt.shz\n./empty\n./link\n./sub\n./sub/b.txt.shz\n"
        "./sub/deeper\n./sub/deeper/c.txt.shz\n./sub/old.shz\n");
  CHECK(slurp(tree + "/sub/old.shz") == std::vector<uint8_t>{9, 9, 9});

  // -l and -t take the archives (the fake one fails, the others pass).
  CHECK(capture(kBin + " -l -r " + q(tree) + " 2>/dev/null").find("original size    3000 bytes") != std::string::npos);
  CHECK(run(kBin + " -q -t -r " + q(tree) + " 2>/dev/null") == 3);  // old.shz is not an archive
  REQUIRE(run("rm " + q(tree + "/sub/old.shz")) == 0);
  CHECK(run(kBin + " -q -t -r " + q(tree)) == 0);

  // -o takes one file: a tree of several is refused.
  CHECK(run(kBin + " -q -d -r -o " + q(dir / "x") + " " + q(tree) + " 2>/dev/null") == 1);
  REQUIRE(run(kBin + " -q -d -r --rm " + q(tree)) == 0);
  CHECK(slurp(tree + "/a.txt") == a);
  CHECK(slurp(tree + "/sub/b.txt") == b);
  CHECK(slurp(tree + "/sub/deeper/c.txt") == c);
  CHECK(capture("cd " + q(tree) + " && find . -name '*.shz'").empty());
}

TEST_CASE("several archives in one file decode to their contents in order", "[cli]") {
  // As with gzip and zstd: `shazip -c a b > ab.shz` and `cat a.shz b.shz`
  // make files that decode to a + b.
  TempDir dir;
  const auto a = english(3000, 21), b = english(2000, 22);
  spit(dir / "a", a);
  spit(dir / "b", b);
  spit(dir / "empty", {});
  REQUIRE(run(kBin + " -q -1 -c " + q(dir / "a") + " " + q(dir / "b") + " > " + q(dir / "ab.shz")) == 0);
  REQUIRE(run(kBin + " -q -1 " + q(dir / "a") + " " + q(dir / "b") + " " + q(dir / "empty")) == 0);
  REQUIRE(run("cat " + q(dir / "b.shz") + " " + q(dir / "empty.shz") + " " + q(dir / "a.shz") + " > " +
              q(dir / "bea.shz")) == 0);
  std::vector<uint8_t> ab = a, ba = b;
  ab.insert(ab.end(), b.begin(), b.end());
  ba.insert(ba.end(), a.begin(), a.end());

  REQUIRE(run(kBin + " -q -d " + q(dir / "ab.shz")) == 0);
  CHECK(slurp(dir / "ab") == ab);
  CHECK(run(kBin + " -q -d -c < " + q(dir / "bea.shz") + " > " + q(dir / "bea")) == 0);
  CHECK(slurp(dir / "bea") == ba);
  CHECK(run(kBin + " -q -t " + q(dir / "bea.shz")) == 0);
  const std::string listing = capture(kBin + " -l " + q(dir / "bea.shz"));
  CHECK(listing.find("3 archives back to back, 5000 bytes of content in all") != std::string::npos);
  CHECK(listing.find("archive 3 of 3") != std::string::npos);

  // Anything after the last archive that is not an archive, or an archive cut
  // short, fails with nothing written.
  std::vector<uint8_t> bad = slurp(dir / "ab.shz");
  bad.push_back('\n');
  spit(dir / "junk.shz", bad);
  CHECK(run(kBin + " -q -d " + q(dir / "junk.shz") + " 2>/dev/null") == 5);
  bad.resize(bad.size() - 2);
  spit(dir / "cut.shz", bad);
  CHECK(run(kBin + " -q -d " + q(dir / "cut.shz") + " 2>/dev/null") == 4);
  CHECK_FALSE(std::ifstream(dir / "junk").good());
  CHECK_FALSE(std::ifstream(dir / "cut").good());
}

TEST_CASE("shazip -j compresses in blocks that decode in parallel", "[cli][blocks]") {
  TempDir dir;
  const auto text = english(150000, 31);  // blocks of 64K: 65536, 65536, 18928 bytes
  spit(dir / "t", text);
  const std::string t = q(dir / "t");
  const std::string err = capture(kBin + " -1 -j 2 --block-size 64K " + t + " -o " + q(dir / "j2.shz") + " 2>&1");
  CHECK(err.find("3 blocks") != std::string::npos);
  REQUIRE(run(kBin + " -q -1 -j 1 --block-size 64KiB " + t + " -o " + q(dir / "j1.shz")) == 0);
  CHECK(slurp(dir / "j1.shz") == slurp(dir / "j2.shz"));  // the jobs change nothing
  CHECK(capture(kBin + " -l " + q(dir / "j2.shz")).find("3 archives back to back, 150000 bytes") != std::string::npos);
  REQUIRE(run(kBin + " -q -d -j 3 -c " + q(dir / "j2.shz") + " > " + q(dir / "back")) == 0);
  CHECK(slurp(dir / "back") == text);
  CHECK(run(kBin + " -q -t -j 0 " + q(dir / "j2.shz")) == 0);
  // An older shazip's way: one at a time.
  CHECK(run(kBin + " -q -d -c " + q(dir / "j2.shz") + " | cmp -s - " + t) == 0);

  // An input of one block: the archive -j leaves out.
  spit(dir / "small", english(5000, 32));
  REQUIRE(run(kBin + " -q -1 -j 4 " + q(dir / "small") + " -o " + q(dir / "small.j.shz")) == 0);
  REQUIRE(run(kBin + " -q -1 " + q(dir / "small")) == 0);
  CHECK(slurp(dir / "small.j.shz") == slurp(dir / "small.shz"));

  // Sizes that are not sizes, blocks below 64K, --block-size where nothing
  // is compressed, -j with -b: usage errors, nothing written.
  for (const char* args : {"--block-size 8X", "--block-size 63K", "--block-size M", "--block-size 99999999999999G",
                            "--block-size 999999999999G", "--block-size 8MX", "-d --block-size 1M", "-b -j 2",
                            "-j 300"}) {
    CAPTURE(args);
    CHECK(run(kBin + " -q " + args + " " + t + " -o " + q(dir / "never.shz") + " 2>/dev/null") == 1);
  }
  CHECK_FALSE(std::ifstream(dir / "never.shz").good());
}

TEST_CASE("incompressible data is stored: at most the stored header larger", "[cli]") {
  TempDir dir;
  const std::vector<uint8_t> noise = random_bytes(30000, 5);
  spit(dir / "noise", noise);
  REQUIRE(run(kBin + " -q -1 " + q(dir / "noise")) == 0);
  const auto archive = slurp(dir / "noise.shz");
  CHECK(archive.size() <= noise.size() + shazip::kStoredHeaderSize);
  CHECK(capture(kBin + " -l " + q(dir / "noise.shz")).find("stored") != std::string::npos);
  REQUIRE(run(kBin + " -q -d -c " + q(dir / "noise.shz") + " > " + q(dir / "noise.out")) == 0);
  CHECK(slurp(dir / "noise.out") == noise);
}

TEST_CASE("several inputs end with a summary line, compressed or tested", "[cli]") {
  TempDir dir;
  spit(dir / "a", english(3000, 31));
  spit(dir / "b", english(2000, 32));
  const std::string a = q(dir / "a"), b = q(dir / "b");
  const std::string said = capture(kBin + " -1 " + a + " " + b + " 2>&1");
  const uint64_t archives = slurp(dir / "a.shz").size() + slurp(dir / "b.shz").size();
  CHECK(said.find("\n2 files: 5000 => " + std::to_string(archives) + " bytes (") != std::string::npos);
  const std::string tested = capture(kBin + " -t " + a + ".shz " + b + ".shz 2>&1");
  CHECK(tested.find("\n2 archives OK (5000 bytes)\n") != std::string::npos);
  // One input, -q, or decompressing: no summary.
  CHECK(capture(kBin + " -1 -f " + a + " 2>&1").find("files:") == std::string::npos);
  CHECK(capture(kBin + " -q -1 -f " + a + " " + b + " 2>&1").empty());
  CHECK(capture(kBin + " -d -f " + a + ".shz " + b + ".shz 2>&1").empty());
  // A failed input is not counted.
  const std::string partly = capture(kBin + " -1 -f " + a + " " + q(dir / "missing") + " " + b + " 2>&1");
  CHECK(partly.find("\n2 files: 5000 => ") != std::string::npos);
}

TEST_CASE("data the model does not shrink is stored early, and says so", "[cli]") {
  // 160 KiB of noise: stored at a glance, the context models alone having
  // saved nothing on the bytes that the model's check would see (archive.h).
  TempDir dir;
  const std::vector<uint8_t> noise = random_bytes(160 << 10, 6);
  spit(dir / "noise", noise);
  const std::string said = capture(kBin + " -1 " + q(dir / "noise") + " 2>&1");
  CHECK(said.find("stored at a glance: the context models saved nothing over 128.") != std::string::npos);
  CHECK(slurp(dir / "noise.shz").size() == noise.size() + shazip::kStoredHeaderSize);
  REQUIRE(run(kBin + " -q -t " + q(dir / "noise.shz")) == 0);
  // Without the glance the model gives up after kGiveUpBytes: the same archive.
  const std::string model = capture("SHAZIP_NO_GLANCE=1 " + kBin + " -1 -c " + q(dir / "noise") + " 2>&1 > " +
                                    q(dir / "model.shz"));
  CHECK(model.find("stored: the model saved nothing over 128.") != std::string::npos);
  CHECK(slurp(dir / "model.shz") == slurp(dir / "noise.shz"));
  // --no-early-store codes it to its end, then stores it as before.
  const std::string whole = capture(kBin + " -1 -f --no-early-store " + q(dir / "noise") + " 2>&1");
  CHECK(whole.find(", stored)") != std::string::npos);
  CHECK(whole.find("saved nothing") == std::string::npos);
  CHECK(slurp(dir / "noise.shz").size() == noise.size() + shazip::kStoredHeaderSize);
  // The benchmark's row: stored, no code lengths of the model (null, not 0).
  const std::string json = capture(kBin + " -q -b --json --no-zstd -1 " + q(dir / "noise") + " 2>/dev/null");
  CHECK(json.find("\"stored\": true, \"gave_up\": true, \"model_bits_per_char\": null, "
                  "\"sha_rnn_bits_per_char\": null, \"coder_overhead_bytes\": null") != std::string::npos);
  const std::string table = capture(kBin + " -q -b --no-zstd -1 " + q(dir / "noise") + " 2>/dev/null");
  CHECK(table.find("stored early") != std::string::npos);
  // -j: each block decides; text then noise, one block each.
  std::vector<uint8_t> both = english(160 << 10, 8);
  both.insert(both.end(), noise.begin(), noise.end());
  spit(dir / "both", both);
  const std::string blocks = capture(kBin + " -1 -j 1 --block-size 160K " + q(dir / "both") + " 2>&1");
  CHECK(blocks.find("bits per char, 2 blocks, 1 stored)") != std::string::npos);
  REQUIRE(run(kBin + " -q -d -c " + q(dir / "both.shz") + " > " + q(dir / "both.out")) == 0);
  CHECK(slurp(dir / "both.out") == both);
}

TEST_CASE("empty and one-byte files round-trip", "[cli]") {
  TempDir dir;
  for (const auto& content : {std::vector<uint8_t>{}, std::vector<uint8_t>{'x'}}) {
    spit(dir / "f", content);
    REQUIRE(run(kBin + " -q -f " + q(dir / "f")) == 0);
    CHECK(slurp(dir / "f.shz").size() <= content.size() + shazip::kStoredHeaderSize);
    REQUIRE(run(kBin + " -q -d -c " + q(dir / "f.shz") + " > " + q(dir / "f.out")) == 0);
    CHECK(slurp(dir / "f.out") == content);
    // The summary line: a ratio where there is one, none for an empty input
    // (as zstd), where it used to say 100%.
    const std::string said = capture(kBin + " -c " + q(dir / "f") + " 2>&1 >/dev/null");
    const std::string sizes = std::to_string(content.size()) + " => " + std::to_string(slurp(dir / "f.shz").size());
    INFO(said);
    CHECK(said.find(sizes + " bytes" + (content.empty() ? ", (stdout)" : " (")) != std::string::npos);
    CHECK((said.find('%') == std::string::npos) == content.empty());
    // -b: no bits per character for an empty input (they used to read 0).
    const std::string json = capture(kBin + " -q -b --json -1 " + q(dir / "f") + " 2>/dev/null");
    Json rows;
    REQUIRE_NOTHROW(rows = JsonParser(json).parse());
    REQUIRE(rows.items.size() == 4);  // shazip and three zstd rows
    for (const Json& r : rows.items) {
      for (const char* key : {"bits_per_char", "model_bits_per_char", "sha_rnn_bits_per_char"}) {
        if (!r.get(key)) continue;  // the model's figures are shazip's only
        INFO(key);
        CHECK((r.get(key)->kind == Json::kNull) == content.empty());
      }
    }
    const std::string table = capture(kBin + " -q -b --no-zstd -1 " + q(dir / "f") + " 2>/dev/null");
    const size_t from = table.find('\n') + 1;  // the row after the heading
    const std::string row = table.substr(from, table.find('\n', from) - from);
    INFO(table);
    CHECK((row.find(" - ") != std::string::npos) == content.empty());
    const std::string csv = capture(kBin + " -q -b --csv --no-zstd -1 " + q(dir / "f") + " 2>/dev/null");
    CHECK((csv.find(",,,") != std::string::npos) == content.empty());
  }
}

TEST_CASE("errors: one line, documented exit code, nothing left behind", "[cli]") {
  TempDir dir;
  const auto text = english(6000, 6);
  const SmallArchive made = make_archive(dir, "good", text);
  const auto& archive = made.bytes;
  const auto& header = made.header;
  const size_t header_size = made.header_size;
  REQUIRE(header.method == shazip::Method::kNeural);

  auto expect = [&](const std::string& args, int code, const std::string& message) {
    const auto before = dir.entries();
    const std::string err = capture(kBin + " " + args + " 2>&1 >/dev/null");
    INFO(args << " -> " << err);
    CHECK(run(kBin + " " + args + " >/dev/null 2>&1") == code);
    CHECK(err.rfind("shazip: ", 0) == 0);
    CHECK(err.find(message) != std::string::npos);
    CHECK(std::count(err.begin(), err.end(), '\n') == 1);
    CHECK(dir.entries() == before);
  };

  expect(q(dir / "missing"), 2, "No such file");
  expect("-d " + q(dir / "missing.shz"), 2, "No such file");
  REQUIRE(mkdir((dir / "sub").c_str(), 0755) == 0);
  expect(q(dir / "sub"), 2, "directory");

  spit(dir / "plain.shz", text);
  expect("-d " + q(dir / "plain.shz"), 3, "not a shazip archive");

  const size_t half = header_size + (archive.size() - header_size) / 2;
  spit(dir / "cut.shz", std::vector<uint8_t>(archive.begin(), archive.begin() + static_cast<long>(half)));
  expect("-d " + q(dir / "cut.shz"), 4, "truncated");
  spit(dir / "cuthead.shz", std::vector<uint8_t>(archive.begin(), archive.begin() + 30));
  expect("-d " + q(dir / "cuthead.shz"), 4, "truncated");

  auto damaged = archive;
  damaged[header_size + damaged.size() / 3 * 0 + (damaged.size() - header_size) / 2] ^= 0x10;
  spit(dir / "bad.shz", damaged);
  expect("-d " + q(dir / "bad.shz"), 5, "");

  auto bad_crc = archive;
  bad_crc[16] ^= 0xFF;  // the content CRC, re-sealed with a valid header CRC
  {
    const uint32_t crc = shazip::crc32(bad_crc.data(), header_size - 4);
    for (int i = 0; i < 4; ++i) bad_crc[header_size - 4 + i] = static_cast<uint8_t>(crc >> (8 * i));
  }
  spit(dir / "crc.shz", bad_crc);
  expect("-d " + q(dir / "crc.shz"), 5, "checksum mismatch");

  auto newer = archive;
  newer[4] = shazip::kFormatVersion + 1;
  spit(dir / "newer.shz", newer);
  expect("-d " + q(dir / "newer.shz"), 6, "upgrade shazip");

  // Same archive, but claiming another LibTorch and BLAS: re-encode its
  // header. A format-7 CPU archive's arithmetic is all shazip's, so it still
  // decodes; as format 6 (LibTorch's training step) it names what it needs.
  auto other = header;
  REQUIRE(shazip::portable_arithmetic(other));
  other.backend.torch_version = "9.9.9";
  other.backend.blas = "the reference BLAS";
  other.backend.cpu_capability = "default";
  auto reencode = [&](const shazip::Header& h) {
    auto a = shazip::write_header(h);
    a.insert(a.end(), archive.begin() + static_cast<long>(header_size), archive.end());
    return a;
  };
  spit(dir / "portable.shz", reencode(other));
  CHECK(run(kBin + " -t " + q(dir / "portable.shz") + " 2>&1") == 0);
  std::remove((dir / "portable.shz").c_str());
  other.version = 6;
  spit(dir / "foreign.shz", reencode(other));
  expect("-d " + q(dir / "foreign.shz"), 7, "LibTorch 9.9.9");
  // A header may ask for any model: one larger than the machine is refused
  // before anything is allocated (d=8192, 64 layers: 1.5 TB) ...
  auto huge = header;
  huge.model.dim = 8192;
  huge.model.layers = 64;
  spit(dir / "huge.shz", reencode(huge));
  expect("-d " + q(dir / "huge.shz"), 2, " TB of memory for its model, tables and data, more than the");
  // ... and so is one that fits the machine but not the memory the process
  // may take: 154M parameters, 4.9 GB by decode_memory's estimate, under a
  // 2.5 GB address-space limit (the weights twice, their gradients and
  // Adam's two moments alone take 3.1 GB). Before shazip read the process's
  // limits this one failed part way as out of memory (LibTorch's allocator);
  // now the limit is named before anything is allocated.
  huge.model.dim = 1024;
  huge.model.layers = 12;
  spit(dir / "big.shz", reencode(huge));
  const std::string limited = "ulimit -v 2500000; " + kBin + " -d -c " + q(dir / "big.shz");
  const std::string said = capture(limited + " 2>&1 >/dev/null");
  INFO(said);
  CHECK(said.find(" GB of memory for its model, tables and data, more than the ") != std::string::npos);
  CHECK(said.find(" the address-space limit (ulimit -v) leaves\n") != std::string::npos);
  CHECK(run(limited + " >/dev/null 2>&1") == 2);
  CHECK(capture("ulimit -d 2500000; " + kBin + " -d -c " + q(dir / "big.shz") + " 2>&1 >/dev/null")
            .find(" the data limit (ulimit -d) leaves\n") != std::string::npos);
  std::remove((dir / "huge.shz").c_str());
  std::remove((dir / "big.shz").c_str());
  auto gpu = header;  // a GPU's archive whose training ran on LibTorch (no CUDA training kernels)
  gpu.model.cuda_train_kernels = 0;
  gpu.backend.device = shazip::model::DeviceKind::kCuda;
  auto gpu_archive = shazip::write_header(gpu);
  gpu_archive.insert(gpu_archive.end(), archive.begin() + static_cast<long>(header_size), archive.end());
  spit(dir / "gpu.shz", gpu_archive);
  if (capture(kBin + " -V").find("CUDA not available") != std::string::npos) {
    expect("-d " + q(dir / "gpu.shz"), 7, "CUDA");
  }

  expect("-d " + q(dir / "good"), 1, "unknown suffix");
  expect("--level 12 " + q(dir / "good"), 1, "");
  expect("/dev/null", 1, "not a regular file");  // would write /dev/null.shz
  // The input as its own output, even with -f: by name, or through a link.
  expect("-f -o " + q(dir / "good") + " " + q(dir / "good"), 1, "is the input itself");
  expect("-d -f -o " + q(dir / "good.shz") + " " + q(dir / "good.shz"), 1, "is the input itself");
  REQUIRE(symlink("good", (dir / "link").c_str()) == 0);
  expect("-f -o " + q(dir / "link") + " " + q(dir / "good"), 1, "is the input itself");
  std::remove((dir / "link").c_str());
  CHECK(slurp(dir / "good") == text);
  expect("-19 " + q(dir / "good"), 1, "-19: no such preset");  // zstd's habit: not a file named -19
  expect("-j -1 " + q(dir / "good"), 1, "--jobs: Value -1 not in range");  // -1 is -j's value, not a preset
  // Permission errors: root passes every permission check, so as root run the
  // binary as user nobody through setpriv (util-linux).
  {
    std::string as_user;
    if (geteuid() == 0) {
      if (run("command -v setpriv >/dev/null") == 0) {
        as_user = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
        chmod(dir.path.c_str(), 0755);
      }
    }
    if (geteuid() != 0 || !as_user.empty()) {
      REQUIRE(mkdir((dir / "ro").c_str(), 0555) == 0);
      spit(dir / "secret", text);
      chmod((dir / "secret").c_str(), 0600);
      chmod((dir / "good").c_str(), 0644);
      const std::string saved = kBin;
      auto expect_as = [&](const std::string& args, const std::string& message) {
        const std::string err = capture(as_user + kBin + " " + args + " 2>&1 >/dev/null");
        INFO(args << " -> " << err);
        CHECK(run(as_user + kBin + " " + args + " >/dev/null 2>&1") == 2);
        CHECK(err.find(message) != std::string::npos);
      };
      if (geteuid() == 0 || access((dir / "secret").c_str(), R_OK) != 0) {
        expect_as("-1 -c " + q(dir / "secret"), "Permission denied");
      }
      expect_as("-1 " + q(dir / "good") + " -o " + q(dir / "ro/x.shz"), "Permission denied");
      CHECK(capture("ls -A " + q(dir / "ro")).empty());
    }
  }
  expect("-d " + q(dir / "good.shz") + " -o /dev/full", 2, "No space left on device");
}

TEST_CASE("memory: the process's limits are named up front and a failed allocation says what was needed", "[cli]") {
  TempDir dir;
  spit(dir / "text", english(1000000, 11));  // ~730 MB of tables at the default preset
  const std::string cmd = kBin + " -c " + q(dir / "text") + " 2>&1 >/dev/null";
  // Under ulimit -v the plan is refused before anything is allocated, with
  // the limit's figure: what it leaves beside what the process has mapped.
  const std::string refused = capture("ulimit -v 100000; " + cmd);
  INFO(refused);
  double needed_mb = 0, left_mb = 0;
  REQUIRE(std::sscanf(refused.c_str() + refused.find("compressing needs about "),
                      "compressing needs about %lf MB of memory for its model, tables and data, more than the %lf MB",
                      &needed_mb, &left_mb) == 2);
  CHECK(refused.find(" the address-space limit (ulimit -v) leaves\n") != std::string::npos);
  CHECK(run("ulimit -v 100000; " + kBin + " -c " + q(dir / "text") + " >/dev/null 2>&1") == 2);
  // So is the benchmark's (its largest preset's coding and three copies of the input).
  const std::string bench = capture("ulimit -v 100000; " + kBin + " -b --no-zstd " + q(dir / "text") + " 2>&1");
  CHECK(bench.find("benchmarking needs about ") != std::string::npos);
  CHECK(bench.find(" the address-space limit (ulimit -v) leaves\n") != std::string::npos);
  // A limit 1 MB above the estimate (and what the process had mapped) lets
  // the plan through; the coding's thread stacks and buffers, which the
  // estimate leaves out (a few MB here), then fail an allocation, and the
  // error says how much the coding needed instead of a bare "out of memory".
  const long base_kb = 100000 - std::lround(left_mb * 1024);
  const long limit_kb = base_kb + std::lround(needed_mb * 1024) + 1024;
  const std::string failed = capture("ulimit -v " + std::to_string(limit_kb) + "; " + cmd);
  char expected[200];
  std::snprintf(expected, sizeof expected,
                ": out of memory: compressing needs about %.2f MB for its model, tables and data\n", needed_mb);
  INFO(failed);
  CHECK(failed == "shazip: " + dir / "text" + expected);
  CHECK(dir.entries() == std::vector<std::string>{"text"});

  // -j plans its jobs within what the limit leaves: two blocks of 64 KB,
  // room for one job, run one at a time with a note, the same archive.
  spit(dir / "small", english(131072, 12));
  const std::string jobs = kBin + " -j 2 --block-size 64K -c " + q(dir / "small");
  const std::string one_job = capture("ulimit -v 100000; " + jobs + " 2>&1 >/dev/null");
  double job_mb = 0;
  REQUIRE(std::sscanf(one_job.c_str() + one_job.find("compressing needs about "), "compressing needs about %lf MB",
                      &job_mb) == 1);
  const long room_kb = base_kb + std::lround(job_mb * 1.5 * 1024);  // one job and a half
  REQUIRE(run("ulimit -v " + std::to_string(room_kb) + "; " + jobs + " > " + q(dir / "limited.shz") + " 2> " +
              q(dir / "note")) == 0);
  const auto note = slurp(dir / "note");
  CHECK(std::string(note.begin(), note.end()).find("2 jobs would take about ") != std::string::npos);
  CHECK(std::string(note.begin(), note.end()).find(": running 1\n") != std::string::npos);
  REQUIRE(run(jobs + " > " + q(dir / "free.shz") + " 2>/dev/null") == 0);
  CHECK(slurp(dir / "limited.shz") == slurp(dir / "free.shz"));

  // Noise that the model would not shrink is stored at a glance, which
  // needs none of the model's memory: under the limit that refused the
  // text, 2 MB of it are stored, not refused; at preset 4, whose level-3
  // tables take some 2 GB beside the default's 0.7, and in blocks.
  const std::vector<uint8_t> noise = random_bytes(2000000, 13);
  spit(dir / "noise", noise);
  for (const auto& [options, archives] : {std::pair<std::string, size_t>{"", 1}, {" -4", 1},
                                          {" -j 2 --block-size 1M", 2}}) {
    const std::string stored = capture("ulimit -v 100000; " + kBin + options + " " + q(dir / "noise") + " 2>&1");
    INFO(stored);
    CHECK(stored.find("stored at a glance") != std::string::npos);
    CHECK(slurp(dir / "noise.shz").size() == noise.size() + archives * shazip::kStoredHeaderSize);
    REQUIRE(std::remove((dir / "noise.shz").c_str()) == 0);
  }
}

TEST_CASE("compressed data is never written to a terminal", "[cli]") {
  // `script` gives the child a pseudo-terminal as standard output.
  if (run("command -v script >/dev/null 2>&1") != 0) return;
  TempDir dir;
  spit(dir / "t", english(100, 7));
  const std::string out =
      capture("script -qec \"" + kBin + " -c " + dir.path + "/t; echo rc=\\$?\" /dev/null 2>&1");
  CHECK(out.find("refusing to write compressed data to a terminal") != std::string::npos);
  CHECK(out.find("rc=1") != std::string::npos);
}

TEST_CASE("compressed data is never read from a terminal", "[cli]") {
  // Under `script` standard input is a pseudo-terminal too: -d, -t and -l
  // refuse it at once instead of waiting on a keyboard (gzip's rule).
  if (run("command -v script >/dev/null 2>&1") != 0) return;
  const std::string out = capture("script -qec \"" + kBin + " -d; echo rc=\\$?; " + kBin + " -t -c; echo rc=\\$?; " +
                                  kBin + " -l; echo rc=\\$?\" /dev/null < /dev/null 2>&1");
  size_t refusals = 0;
  const std::string refusal = "(stdin): refusing to read compressed data from a terminal";
  for (size_t at = 0; (at = out.find(refusal, at)) != std::string::npos; ++at) {
    ++refusals;
  }
  CHECK(refusals == 3);
  CHECK(out.find("rc=0") == std::string::npos);
  CHECK(out.find("rc=1") != std::string::npos);
}

TEST_CASE("golden archives of every supported version decode byte-exactly", "[cli][golden]") {
  // tests/golden/vN/NAME.shz: made by the shazip of format version N from
  // tests/golden/NAME (tools/make_golden.sh); from version 11 on also a
  // preset-6 archive, the GPU presets' mix level 3; from version 12 on a
  // two-stream archive, the first with the stream contexts.
  const std::string golden = std::string(SHAZIP_SOURCE_DIR) + "/tests/golden";
  TempDir dir;
  int checked = 0, expected = 0;
  for (int version = shazip::kMinFormatVersion; version <= shazip::kFormatVersion; ++version) {
    const std::string vdir = golden + "/v" + std::to_string(version);
    std::vector<std::string> names = {"design.txt", "design-p2.txt", "one-byte.txt", "empty.txt", "noise.bin"};
    if (version >= 11) names.push_back("design-p6.txt");
    if (version >= 12) names.push_back("streams-2.txt");
    expected += static_cast<int>(names.size());
    for (const std::string& name : names) {
      INFO("version " << version << ": " << name);
      const std::string archive = vdir + "/" + name + ".shz";
      const std::vector<uint8_t> bytes = slurp(archive);
      REQUIRE(bytes.size() > 4);
      CHECK(static_cast<int>(static_cast<uint8_t>(bytes[4])) == version);
      REQUIRE(run(kBin + " -q -d -c " + q(archive) + " > " + q(dir / "out")) == 0);
      CHECK(slurp(dir / "out") == slurp(golden + "/" + name));
      ++checked;
    }
  }
  CHECK(checked == expected);
  // The preset-6 archive is what it says: mix level 3.
  const std::vector<uint8_t> p6 = slurp(golden + "/v11/design-p6.txt.shz");
  size_t header_size = 0;
  const shazip::Header h = shazip::parse_header(p6.data(), p6.size(), &header_size);
  CHECK(h.preset == 6);
  CHECK(h.model.mix == 3);
  // From format 12 on, the two-stream archive (streams-2) has the stream
  // contexts and the one-stream one (design-p2) none; from 13 on both have
  // the class contexts, from 14 on the own rates, from 15 on the one-sided
  // inputs, from 16 on the nibble groups, from 18 on the text contexts, from
  // 19 on the table shapes, from 20 on the long matches and the scope
  // context, from 21 on the more run maps and the word's indirect context,
  // from 22 on the mixer selectors, from 23 on the layer-2 inputs, from 24
  // on the shape contexts. The header says so, and so does -l.
  struct Switches {
    int version, class_contexts, own_rates, one_sided, nibble_groups, text_contexts, table_shapes, format20;
    int format21, format22, format23, format24;
    const char* two_streams;  // how -l names the mixing stage of each
    const char* one_stream;
  };
  for (const Switches& v :
       {Switches{12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "(mix level 2, with stream contexts)", "(mix level 2)"},
        Switches{13, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "(mix level 2, with stream and class contexts)",
                 "(mix level 2, with class contexts)"},
        Switches{14, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, "(mix level 2, with stream and class contexts, own rates)",
                 "(mix level 2, with class contexts, own rates)"},
        Switches{15, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0,
                 "(mix level 2, with stream and class contexts, own rates, one-sided inputs)",
                 "(mix level 2, with class contexts, own rates, one-sided inputs)"},
        Switches{16, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0,
                 "(mix level 2, with stream and class contexts, own rates, one-sided inputs, nibble groups)",
                 "(mix level 2, with class contexts, own rates, one-sided inputs, nibble groups)"},
        Switches{17, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0,
                 "(mix level 2, with stream and class contexts, own rates, one-sided inputs, nibble groups)",
                 "(mix level 2, with class contexts, own rates, one-sided inputs, nibble groups)"},
        Switches{18, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
                 "(mix level 2, with stream, class and text contexts, own rates, one-sided inputs, nibble groups)",
                 "(mix level 2, with class and text contexts, own rates, one-sided inputs, nibble groups)"},
        Switches{19, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
                 "(mix level 2, with stream, class and text contexts, own rates, one-sided inputs, nibble groups, "
                 "table shapes)",
                 "(mix level 2, with class and text contexts, own rates, one-sided inputs, nibble groups, "
                 "table shapes)"},
        Switches{20, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0,
                 "(mix level 2, with stream, class, text and scope contexts, own rates, one-sided inputs, nibble "
                 "groups, table shapes, long matches)",
                 "(mix level 2, with class, text and scope contexts, own rates, one-sided inputs, nibble groups, "
                 "table shapes, long matches)"},
        Switches{21, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0,
                 "(mix level 2, with stream, class, text, scope and word indirect contexts, own rates, one-sided "
                 "inputs, nibble groups, table shapes, long matches, six run maps)",
                 "(mix level 2, with class, text, scope and word indirect contexts, own rates, one-sided inputs, "
                 "nibble groups, table shapes, long matches, six run maps)"},
        Switches{22, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0,
                 "(mix level 2, with stream, class, text, scope and word indirect contexts, own rates, one-sided "
                 "inputs, nibble groups, table shapes, long matches, six run maps, mixer selectors)",
                 "(mix level 2, with class, text, scope and word indirect contexts, own rates, one-sided inputs, "
                 "nibble groups, table shapes, long matches, six run maps, mixer selectors)"},
        Switches{23, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
                 "(mix level 2, with stream, class, text, scope and word indirect contexts, own rates, one-sided "
                 "inputs, nibble groups, table shapes, long matches, six run maps, mixer selectors, layer-2 "
                 "inputs)",
                 "(mix level 2, with class, text, scope and word indirect contexts, own rates, one-sided inputs, "
                 "nibble groups, table shapes, long matches, six run maps, mixer selectors, layer-2 inputs)"},
        Switches{24, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                 "(mix level 2, with stream, class, text, scope, word indirect and shape contexts, own rates, "
                 "one-sided inputs, nibble groups, table shapes, long matches, six run maps, mixer selectors, "
                 "layer-2 inputs)",
                 "(mix level 2, with class, text, scope, word indirect and shape contexts, own rates, one-sided "
                 "inputs, nibble groups, table shapes, long matches, six run maps, mixer selectors, layer-2 "
                 "inputs)"}}) {
    INFO("version " << v.version);
    const std::string vdir = golden + "/v" + std::to_string(v.version);
    const std::vector<uint8_t> two = slurp(vdir + "/streams-2.txt.shz");
    const shazip::Header h2 = shazip::parse_header(two.data(), two.size(), &header_size);
    CHECK(h2.streams == 2);
    CHECK(h2.model.mix == 2);
    CHECK(h2.model.stream_contexts == 1);
    CHECK(h2.model.class_contexts == v.class_contexts);
    CHECK(h2.model.own_rates == v.own_rates);
    CHECK(h2.model.one_sided == v.one_sided);
    CHECK(h2.model.nibble_groups == v.nibble_groups);
    CHECK(h2.model.text_contexts == v.text_contexts);
    CHECK(h2.model.table_shapes == v.table_shapes);
    CHECK(h2.model.long_matches == v.format20);
    CHECK(h2.model.scope_context == v.format20);
    CHECK(h2.model.more_runs == v.format21);
    CHECK(h2.model.word_indirect == v.format21);
    CHECK(h2.model.mixer_selectors == v.format22);
    CHECK(h2.model.layer2_inputs == v.format23);
    CHECK(h2.model.shape_contexts == v.format24);
    CHECK(capture(kBin + " -l " + q(vdir + "/streams-2.txt.shz")).find(v.two_streams) != std::string::npos);
    CHECK(capture(kBin + " -l " + q(vdir + "/design-p2.txt.shz")).find(v.one_stream) != std::string::npos);
  }
}

TEST_CASE("format 17 changes the header alone: its goldens code the bits of format 16", "[cli][golden]") {
  // Format 17 (shazip 0.20) writes the neural header's counts as LEB128
  // numbers and leaves out the usual optimizer settings; the model and the
  // coding are 16's. So each golden input's coded data is byte for byte the
  // same in both versions, behind a header some 50 bytes shorter. (Not
  // streams-2, 70 KB in two streams: 0.20 trains such inputs every 16
  // positions, which its header says.)
  const std::string golden = std::string(SHAZIP_SOURCE_DIR) + "/tests/golden";
  const std::vector<uint8_t> two16 = slurp(golden + "/v16/streams-2.txt.shz");
  const std::vector<uint8_t> two17 = slurp(golden + "/v17/streams-2.txt.shz");
  size_t header_size = 0;
  CHECK(shazip::parse_header(two16.data(), two16.size(), &header_size).model.seg_len == 8);
  CHECK(shazip::parse_header(two17.data(), two17.size(), &header_size).model.seg_len == 16);
  for (const std::string name : {"design.txt", "design-p2.txt", "design-p6.txt"}) {
    INFO(name);
    const std::vector<uint8_t> v16 = slurp(golden + "/v16/" + name + ".shz");
    const std::vector<uint8_t> v17 = slurp(golden + "/v17/" + name + ".shz");
    size_t size16 = 0, size17 = 0;
    const shazip::Header h16 = shazip::parse_header(v16.data(), v16.size(), &size16);
    const shazip::Header h17 = shazip::parse_header(v17.data(), v17.size(), &size17);
    REQUIRE(h16.method == shazip::Method::kNeural);
    REQUIRE(h17.method == shazip::Method::kNeural);
    CHECK(h17.version == 17);
    CHECK(h17.model.describe() == h16.model.describe());
    CHECK(h17.model.seed == h16.model.seed);
    CHECK(h17.model.lr_decay == h16.model.lr_decay);
    CHECK(h17.model.beta2 == h16.model.beta2);
    CHECK(h17.model.clip == h16.model.clip);
    CHECK(h17.model.train_groups == h16.model.train_groups);
    CHECK(h17.streams == h16.streams);
    CHECK(size17 + 45 <= size16);
    CHECK(std::vector<uint8_t>(v17.begin() + static_cast<std::ptrdiff_t>(size17), v17.end()) ==
          std::vector<uint8_t>(v16.begin() + static_cast<std::ptrdiff_t>(size16), v16.end()));
  }
}

TEST_CASE("docs/FORMAT.md states the format version this build writes", "[cli][golden]") {
  // The normative document opens with the version and repeats it in the
  // header table; both drifted once (they said 8 and 9 when 10 was written).
  const std::string doc = capture("cat " + q(std::string(SHAZIP_SOURCE_DIR) + "/docs/FORMAT.md"));
  const std::string v = std::to_string(shazip::kFormatVersion);
  const std::string older =
      std::to_string(shazip::kMinFormatVersion) + " to " + std::to_string(shazip::kFormatVersion - 1);
  CHECK(doc.find("Format version: **" + v + "**") != std::string::npos);
  CHECK(doc.find("decodes versions " + older + " ") != std::string::npos);
  CHECK(doc.find("| format version | " + v + " (" + older + " are still decoded)") != std::string::npos);
  CHECK(doc.find("\n| " + v + " | ") != std::string::npos);  // its row in the version history
}

TEST_CASE("docs/RELEASES.md has an entry for this build's release", "[cli]") {
  // `shazip -V` starts "shazip MAJOR.MINOR.PATCH (archive format N)"; the
  // release notes have an entry for each MAJOR.MINOR ("- **0.15** (format
  // 12)." for one that brought a format; a patch release has one of its own
  // or a line in its minor's), and so name the release that brought the
  // format this build writes.
  const std::string version = capture(kBin + " -V");
  const size_t start = version.find(' ') + 1;
  const size_t minor_end = version.find('.', version.find('.', start) + 1);
  REQUIRE(start > 0);
  REQUIRE(minor_end != std::string::npos);
  const std::string release = version.substr(start, minor_end - start);
  const std::string doc = capture("cat " + q(std::string(SHAZIP_SOURCE_DIR) + "/docs/RELEASES.md"));
  INFO(release);
  CHECK(doc.find("\n- **" + release + "**") != std::string::npos);
  CHECK(doc.find("** (format " + std::to_string(shazip::kFormatVersion) + ").") != std::string::npos);
}

TEST_CASE("unshazip and shazipcat decompress and -dcf passes other data through", "[cli]") {
  // The names are symbolic links to the binary, as `cmake --install` makes
  // them (gunzip/zcat, unzstd/zstdcat); options given still apply.
  TempDir dir;
  const std::string unshazip = dir / "unshazip", shazipcat = dir / "shazipcat";
  REQUIRE(run("ln -s " + q(kBin) + " " + q(unshazip) + " && ln -s " + q(kBin) + " " + q(shazipcat)) == 0);
  const auto text = english(6000, 41);
  spit(dir / "a.txt", text);
  REQUIRE(run(kBin + " -q -1 --rm " + q(dir / "a.txt")) == 0);
  REQUIRE(run(shazipcat + " " + q(dir / "a.txt.shz") + " > " + q(dir / "cat.out")) == 0);
  CHECK(slurp(dir / "cat.out") == text);
  CHECK(run("test -e " + q(dir / "a.txt")) != 0);  // shazipcat writes no file
  REQUIRE(run(unshazip + " -q " + q(dir / "a.txt.shz")) == 0);
  CHECK(slurp(dir / "a.txt") == text);
  CHECK(run(unshazip + " -q -t " + q(dir / "a.txt.shz")) == 0);
  // Not an archive: exit 3, as with -d.
  CHECK(run(shazipcat + " -q " + q(dir / "a.txt") + " > /dev/null 2>&1") == 3);
  // With -f, input that is no archive passes through (zcat -f, zstd -dcf),
  // after or before archives; -t and a damaged archive still fail.
  spit(dir / "plain", english(300, 43));
  REQUIRE(run(shazipcat + " -f " + q(dir / "a.txt.shz") + " " + q(dir / "plain") + " " + q(dir / "a.txt.shz") +
              " > " + q(dir / "mixed")) == 0);
  std::vector<uint8_t> mixed = text;
  const auto plain = slurp(dir / "plain");
  mixed.insert(mixed.end(), plain.begin(), plain.end());
  mixed.insert(mixed.end(), text.begin(), text.end());
  CHECK(slurp(dir / "mixed") == mixed);
  spit(dir / "empty", {});
  CHECK(capture(kBin + " -dcf " + q(dir / "empty") + " " + q(dir / "plain")) ==
        std::string(plain.begin(), plain.end()));
  CHECK(run(kBin + " -q -t -f " + q(dir / "plain") + " 2>/dev/null") == 3);
  CHECK(run(kBin + " -q -d -f " + q(dir / "plain") + " 2>/dev/null") == 1);  // no .shz suffix, no -c
  auto cut = slurp(dir / "a.txt.shz");
  cut.resize(cut.size() / 2);
  spit(dir / "cut.shz", cut);
  CHECK(run(shazipcat + " -q -f " + q(dir / "cut.shz") + " > /dev/null 2>&1") == 4);
  // -z takes precedence over the name; -l lists.
  REQUIRE(run(shazipcat + " -q -z -1 " + q(dir / "a.txt") + " > " + q(dir / "z.shz")) == 0);
  CHECK(slurp(dir / "z.shz") == slurp(dir / "a.txt.shz"));
  CHECK(capture(unshazip + " -l " + q(dir / "z.shz")).find("original size    6000 bytes") != std::string::npos);
}

#if defined(SHAZIP_BUILD_DIR) && defined(SHAZIP_CMAKE)
TEST_CASE("cmake --install puts shazip and its aliases and LibTorch module and manual page in place",
          "[cli][install]") {
  TempDir dir;
  const std::string prefix = dir / "prefix";
  REQUIRE(run(q(SHAZIP_CMAKE) + " --install " + q(SHAZIP_BUILD_DIR) + " --prefix " + q(prefix) + " > /dev/null") == 0);
  const std::string bin = prefix + "/bin/", man = prefix + "/share/man/man1/";
  CHECK(run("test -x " + q(bin + "shazip")) == 0);
  CHECK(capture(bin + "shazip -V") == capture(kBin + " -V"));
  CHECK(run("cmp -s " + q(man + "shazip.1") + " " + q(std::string(SHAZIP_SOURCE_DIR) + "/docs/shazip.1")) == 0);
  for (const char* alias : {"unshazip", "shazipcat"}) {
    INFO(alias);
    CHECK(capture("readlink " + q(bin + alias)) == "shazip\n");
    CHECK(capture("readlink " + q(man + alias + ".1")) == "shazip.1\n");
  }
  // The installed aliases work: compress with shazip, read back with shazipcat.
  const auto text = english(3000, 42);
  spit(dir / "t", text);
  REQUIRE(run(bin + "shazip -q -1 " + q(dir / "t")) == 0);
  REQUIRE(run(bin + "shazipcat " + q(dir / "t.shz") + " > " + q(dir / "t.out")) == 0);
  CHECK(slurp(dir / "t.out") == text);
  // The installed shazip finds its LibTorch module in the install tree: it
  // decodes a format-6 archive (LibTorch's training step), which the build
  // tree's module cannot serve once the binary has moved.
  const std::string golden = std::string(SHAZIP_SOURCE_DIR) + "/tests/golden/";
  REQUIRE(run(bin + "shazip -q -d -c " + q(golden + "v6/design.txt.shz") + " > " + q(dir / "v6.out")) == 0);
  CHECK(slurp(dir / "v6.out") == slurp(golden + "design.txt"));
  // Installing again over the links succeeds (an upgrade).
  CHECK(run(q(SHAZIP_CMAKE) + " --install " + q(SHAZIP_BUILD_DIR) + " --prefix " + q(prefix) + " > /dev/null") == 0);
}
#endif

TEST_CASE("the manual page documents every option of --help and names this version", "[cli]") {
  const std::string page = capture("cat " + q(std::string(SHAZIP_SOURCE_DIR) + "/docs/shazip.1"));
  REQUIRE(!page.empty());
  // The options' entries are the tag lines of .TP paragraphs, where an option
  // is written with "\-" for each dash, as a whole word.
  std::vector<std::string> tags;
  for (size_t at = page.find("\n.TP"); at != std::string::npos; at = page.find("\n.TP", at + 1)) {
    const size_t line = page.find('\n', at + 1) + 1;
    tags.push_back(page.substr(line, page.find('\n', line) - line));
  }
  const auto documented = [&](const std::string& opt) {
    std::string word;
    for (char c : opt) word += c == '-' ? std::string("\\-") : std::string(1, c);
    for (const std::string& tag : tags) {
      for (size_t i = tag.find(word); i != std::string::npos; i = tag.find(word, i + 1)) {
        const size_t after = i + word.size();
        const bool starts = i == 0 || tag[i - 1] != '-';
        const bool ends = after == tag.size() || !(std::isalnum(static_cast<unsigned char>(tag[after])) ||
                                                   tag[after] == '\\' || tag[after] == '-');
        if (starts && ends) return true;
      }
    }
    return false;
  };
  // --help's options are the dash-led words that open its option lines
  // ("  -d,--decompress   Decompress").
  const std::string help = capture(kBin + " --help");
  int options = 0;
  for (size_t pos = help.find("\n  -"); pos != std::string::npos; pos = help.find("\n  -", pos + 1)) {
    const size_t start = pos + 3, end = help.find_first_of(" \n", start);
    for (size_t a = start; a < end;) {
      const size_t comma = std::min(help.find(',', a), end);
      const std::string opt = help.substr(a, comma - a);
      INFO(opt);
      CHECK(documented(opt));
      ++options;
      a = comma + 1;
    }
  }
  CHECK(options >= 30);
  // The page shows the release it documents: `shazip -V` starts "shazip X.Y.Z ".
  const std::string version = capture(kBin + " -V");
  const std::string release = version.substr(0, version.find(' ', version.find(' ') + 1));
  CHECK(page.find("\n.TH SHAZIP 1 \"\" \"" + release + "\"") != std::string::npos);
  // The aliases are named where man(1) looks for them.
  CHECK(page.find("shazip, unshazip, shazipcat \\- ") != std::string::npos);
  // Where groff is installed, the page renders without a warning.
  if (run("command -v groff > /dev/null") == 0) {
    CHECK(capture("groff -man -Tutf8 -ww -z " + q(std::string(SHAZIP_SOURCE_DIR) + "/docs/shazip.1") + " 2>&1") == "");
  } else {
    WARN("groff not installed: the page's rendering was not checked");
  }
}

TEST_CASE("shazip -V names the CPU kernels and SHAZIP_NO_AVX512 takes AVX-512 out of them", "[cli]") {
  const std::string version = capture(kBin + " -V");
  const std::string tag = ", CPU kernels ";
  const size_t at = version.find(tag);
  REQUIRE(at != std::string::npos);
  const std::string kernels = version.substr(at + tag.size(), version.find('\n', at) - at - tag.size());
  CHECK((kernels == "AVX-512 + AVX2 + FMA" || kernels == "AVX2 + FMA" || kernels == "plain C++"));
  const std::string off = capture("SHAZIP_NO_AVX512=1 " + kBin + " -V");
  if (kernels == "AVX-512 + AVX2 + FMA") {
    CHECK(off == version.substr(0, at) + tag + "AVX2 + FMA\n");
  } else {
    CHECK(off == version);
  }
}

TEST_CASE("golden error archives fail with their exit code", "[cli][golden]") {
  // tests/golden-errors/NAME.CODE.shz must fail `shazip -t` with exit code CODE.
  const std::string dir = std::string(SHAZIP_SOURCE_DIR) + "/tests/golden-errors";
  const std::string list = capture("ls " + q(dir));
  size_t start = 0, checked = 0;
  while (start < list.size()) {
    const size_t end = list.find('\n', start);
    const std::string name = list.substr(start, end - start);
    start = end == std::string::npos ? list.size() : end + 1;
    if (name.size() < 7 || name.compare(name.size() - 4, 4, ".shz") != 0) continue;
    const int code = name[name.size() - 5] - '0';
    INFO(name);
    CHECK(run(kBin + " -q -t " + q(dir + "/" + name) + " 2>/dev/null") == code);
    ++checked;
  }
  CHECK(checked >= 9);
}

TEST_CASE("a format-10 archive made on a GPU decodes on the CPU", "[cli][golden]") {
  // The CUDA step and training kernels compute the CPU kernels' bits, so a
  // GPU's archive is the CPU's with another device in its header: the golden
  // v10 archive relabelled as an H200's decodes here, without a GPU. With
  // LibTorch's CUDA training (cuda_train_kernels off) it names its GPU (exit 7).
  const std::string golden = std::string(SHAZIP_SOURCE_DIR) + "/tests/golden";
  const std::vector<uint8_t> cpu = slurp(golden + "/v10/design.txt.shz");
  size_t header_size = 0;
  shazip::Header h = shazip::parse_header(cpu.data(), cpu.size(), &header_size);
  REQUIRE(h.version == 10);
  h.backend.device = shazip::model::DeviceKind::kCuda;
  h.backend.torch_version = "2.11.0";
  h.backend.blas = "NVIDIA H200 sm_90";
  h.backend.cpu_capability = "CUDA 13.0";
  TempDir dir;
  auto relabel = [&](const shazip::Header& with, const std::string& name) {
    std::vector<uint8_t> a = shazip::write_header(with);
    a.insert(a.end(), cpu.begin() + static_cast<std::ptrdiff_t>(header_size), cpu.end());
    spit(dir / name, a);
    return dir / name;
  };
  const std::string gpu = relabel(h, "gpu.shz");
  REQUIRE(run(kBin + " -d -c " + q(gpu) + " > " + q(dir / "out") + " 2> " + q(dir / "err")) == 0);
  CHECK(slurp(dir / "out") == slurp(golden + "/design.txt"));
  if (capture(kBin + " -V").find("CUDA not available") != std::string::npos) {  // said once, unless -q
    const std::vector<uint8_t> err = slurp(dir / "err");
    CHECK(std::string(err.begin(), err.end()) ==
          "shazip: " + gpu +
              ": made on a GPU (NVIDIA H200 sm_90), decoding on the CPU: no GPU here; it takes longer\n");
  }
  const std::string listing = capture(kBin + " -l -v " + q(gpu));
  CHECK(listing.find("GPU NVIDIA H200 sm_90") != std::string::npos);
  CHECK(listing.find("the CPU decodes it too") != std::string::npos);
  CHECK(listing.find("training step    shazip's CUDA kernels") != std::string::npos);
  h.model.cuda_train_kernels = 0;
  CHECK(run(kBin + " -q -t " + q(relabel(h, "libtorch.shz")) + " 2>/dev/null") == 7);
}

// Shell commands that wait until the process $pid has used 0.6 s of CPU time
// (past its start-up of about 0.4 s: coding; at most 20 s of waiting), so
// that a signal sent then reaches a process that is coding, however loaded
// the machine. A fixed sleep let a decoder that ran ahead finish first. (Its
// output is written at the end, so the temporary file cannot tell.)
std::string once_coding() {
  return "for i in $(seq 1000); do t=$(awk '{print $14 + $15}' /proc/$pid/stat 2>/dev/null) || break; "
         "[ \"${t:-0}\" -ge $((60 * $(getconf CLK_TCK) / 100)) ] && break; sleep 0.02; done; ";
}

TEST_CASE("SIGINT and SIGTERM during compression leave no output", "[cli]") {
  TempDir dir;
  spit(dir / "big", english(400000, 8));
  for (const char* sig : {"INT", "TERM"}) {
    INFO(sig);
    // Start, let the model get going, interrupt, and collect the exit status.
    const std::string cmd = "( " + kBin + " -q -3 " + q(dir / "big") + " & pid=$!; " + once_coding() +
                            "kill -" + sig + " $pid; wait $pid; echo $? > " + q(dir / "status") + " )";
    run(cmd);
    const std::string status = capture("cat " + q(dir / "status"));
    CHECK(std::stoi(status) >= 128);
    run("rm -f " + q(dir / "status"));
    const auto entries = dir.entries();
    CHECK(entries == std::vector<std::string>{"big"});
  }
}

TEST_CASE("SIGINT and SIGTERM during decompression leave no output", "[cli]") {
  TempDir dir;
  spit(dir / "big", english(120000, 12));
  REQUIRE(run(kBin + " -q -1 --rm " + q(dir / "big")) == 0);
  REQUIRE(dir.entries() == std::vector<std::string>{"big.shz"});
  for (const char* sig : {"INT", "TERM"}) {
    INFO(sig);
    const std::string cmd = "( " + kBin + " -q -d " + q(dir / "big.shz") + " & pid=$!; " + once_coding() +
                            "kill -" + sig + " $pid; wait $pid; echo $? > " + q(dir / "status") + " )";
    run(cmd);
    const std::string status = capture("cat " + q(dir / "status"));
    CHECK(std::stoi(status) >= 128);
    run("rm -f " + q(dir / "status"));
    CHECK(dir.entries() == std::vector<std::string>{"big.shz"});
  }
  // Undisturbed, the same archive decodes.
  CHECK(run(kBin + " -q -d " + q(dir / "big.shz")) == 0);
  CHECK(slurp(dir / "big") == english(120000, 12));
}

TEST_CASE("damaged payloads and truncations fail with 4 or 5 and leave nothing", "[cli]") {
  TempDir dir;
  const SmallArchive made = make_archive(dir, "p", english(3000, 9));
  const auto& archive = made.bytes;
  const size_t header_size = made.header_size;
  const size_t payload = archive.size() - header_size;
  REQUIRE(payload > 100);
  run("rm " + q(dir / "p"));
  int checked = 0;
  // Bit flips spread over the payload from its first byte to the one before
  // the last. (The coder ends on the value with the fewest bytes inside the
  // final interval, which is narrower than one unit of the next-to-last byte:
  // so a flip there or earlier always leaves the interval and the decoded
  // data changes, but a low bit of the last byte may be free, and flipping it
  // can decode to the original, CRC and all. Cutting the last byte is checked
  // below.)
  for (int k = 0; k <= 12; ++k) {
    auto bad = archive;
    const size_t at = header_size + (payload - 2) * k / 12;
    bad[at] ^= static_cast<uint8_t>(1u << (k % 8));
    spit(dir / "p.shz", bad);
    INFO("flip at payload byte " << at - header_size);
    const int rc = run(kBin + " -q -d " + q(dir / "p.shz") + " 2>/dev/null");
    CHECK((rc == 4 || rc == 5));
    CHECK(dir.entries() == std::vector<std::string>{"p.shz"});
    ++checked;
  }
  // Truncations inside the payload.
  for (size_t cut : {size_t{1}, payload / 3, payload - 1}) {
    spit(dir / "p.shz", std::vector<uint8_t>(archive.begin(), archive.begin() + static_cast<long>(header_size + cut)));
    INFO("payload cut to " << cut);
    CHECK(run(kBin + " -q -d " + q(dir / "p.shz") + " 2>/dev/null") == 4);
    CHECK(dir.entries() == std::vector<std::string>{"p.shz"});
    ++checked;
  }
  CHECK(checked == 16);
}

TEST_CASE("outputs keep the input's permissions and modification time", "[cli]") {
  TempDir dir;
  spit(dir / "m", english(2000, 10));
  REQUIRE(chmod((dir / "m").c_str(), 0640) == 0);
  REQUIRE(run("touch -d '2001-02-03 04:05:06' " + q(dir / "m")) == 0);
  REQUIRE(run(kBin + " -q -1 " + q(dir / "m")) == 0);
  struct stat in_st, out_st;
  REQUIRE(stat((dir / "m").c_str(), &in_st) == 0);
  REQUIRE(stat((dir / "m.shz").c_str(), &out_st) == 0);
  CHECK((out_st.st_mode & 07777) == 0640);
  CHECK(out_st.st_mtime == in_st.st_mtime);
  REQUIRE(run("rm " + q(dir / "m")) == 0);
  REQUIRE(run(kBin + " -q -d " + q(dir / "m.shz")) == 0);
  REQUIRE(stat((dir / "m").c_str(), &out_st) == 0);
  CHECK((out_st.st_mode & 07777) == 0640);
  CHECK(out_st.st_mtime == in_st.st_mtime);
}

// The archive after its header (which records the making process's kernels).
std::vector<uint8_t> payload_of(const std::vector<uint8_t>& archive) {
  size_t header_size = 0;
  shazip::parse_header(archive.data(), archive.size(), &header_size);
  return std::vector<uint8_t>(archive.begin() + static_cast<long>(header_size), archive.end());
}

TEST_CASE("archives do not depend on the caller's CPU kernel settings, and any thread count decodes", "[cli]") {
  // A format-7 CPU archive's arithmetic is shazip's own: LibTorch's and
  // OpenBLAS's kernel sets, forced from outside, change no coded byte (the
  // header records them, as it does the thread count).
  TempDir dir;
  const auto text = english(12000, 11);  // 11 runs of preset 2: kept short
  spit(dir / "x", text);
  REQUIRE(run(kBin + " -q -2 -c " + q(dir / "x") + " > " + q(dir / "base.shz")) == 0);
  REQUIRE(run(kBin + " -q -2 -T 2 -c " + q(dir / "x") + " > " + q(dir / "t2.shz")) == 0);
  const auto base = slurp(dir / "base.shz");
  const auto t2 = slurp(dir / "t2.shz");
  size_t t2_header = 0;
  CHECK(shazip::parse_header(t2.data(), t2.size(), &t2_header).threads == 2);
  CHECK(payload_of(t2) == payload_of(base));
  std::vector<std::string> envs = {"OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1"};
#if defined(__x86_64__)
  // Kernel sets the CPU can run (ATen takes the variable on trust).
  envs.push_back("ATEN_CPU_CAPABILITY=default OPENBLAS_CORETYPE=Sandybridge");
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    envs.push_back("ATEN_CPU_CAPABILITY=avx2 OPENBLAS_CORETYPE=Haswell");
  }
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    envs.push_back("ATEN_CPU_CAPABILITY=avx512 OPENBLAS_CORETYPE=SkylakeX");
  }
#endif
  for (const std::string& env : envs) {
    INFO(env);
    REQUIRE(run("env " + env + " " + kBin + " -q -2 -c " + q(dir / "x") + " > " + q(dir / "again.shz")) == 0);
    CHECK(payload_of(slurp(dir / "again.shz")) == payload_of(base));
    for (const char* archive : {"base.shz", "t2.shz"}) {
      INFO(archive);
      REQUIRE(run("env " + env + " " + kBin + " -q -d -c " + q(dir / archive) + " > " + q(dir / "out")) == 0);
      CHECK(slurp(dir / "out") == text);
    }
  }
}

TEST_CASE("shazip codes and decodes without LibTorch and names its module for older archives", "[cli]") {
  // shazip loads LibTorch (libshazip_torch.so, beside it or in the install
  // tree) only for archives before format 7 and the GPU. A copy of the
  // program alone, without the module, compresses, lists, tests and
  // decompresses; a format-6 archive fails with exit 7 naming the module.
  TempDir dir;
  REQUIRE(run("cp " + q(kBin) + " " + q(dir / "shazip")) == 0);
  const std::string alone = dir / "shazip";
  const auto text = english(5000, 14);
  spit(dir / "x", text);
  REQUIRE(run(alone + " -q " + q(dir / "x")) == 0);
  CHECK(capture(alone + " -V").find("CUDA not available") != std::string::npos);
  CHECK(capture(alone + " -l " + q(dir / "x.shz")).find("shazip's kernels") != std::string::npos);
  CHECK(run(alone + " -q -t " + q(dir / "x.shz")) == 0);
  REQUIRE(run(alone + " -q -d -c " + q(dir / "x.shz") + " > " + q(dir / "out")) == 0);
  CHECK(slurp(dir / "out") == text);
  // The same archive body as the build's own shazip, and a header that
  // names no BLAS.
  REQUIRE(run(kBin + " -q -c " + q(dir / "x") + " > " + q(dir / "ref.shz")) == 0);
  CHECK(slurp(dir / "ref.shz") == slurp(dir / "x.shz"));
  const auto made = slurp(dir / "x.shz");
  size_t header_size = 0;
  CHECK(shazip::parse_header(made.data(), made.size(), &header_size).backend.blas == "none");
  const std::string golden = std::string(SHAZIP_SOURCE_DIR) + "/tests/golden/";
  const std::string err = capture(alone + " -d -c " + q(golden + "v6/design.txt.shz") +
                                  " 2>&1 > /dev/null; echo \"exit $?\"");
  CHECK(err.find("libshazip_torch.so") != std::string::npos);
  CHECK(err.find("exit 7") != std::string::npos);
  // Beside the program, the module serves it.
  REQUIRE(run("cp " + q(std::string(SHAZIP_BUILD_DIR) + "/libshazip_torch.so") + " " + q(dir.path)) == 0);
  REQUIRE(run(alone + " -q -d -c " + q(golden + "v6/design.txt.shz") + " > " + q(dir / "v6")) == 0);
  CHECK(slurp(dir / "v6") == slurp(golden + "design.txt"));
}

TEST_CASE("archives before format 7 decode on pinned CPU kernels from files pipes and standard input", "[cli]") {
  // Without the pinning variables, compressing runs on shazip's kernels (the
  // header says "auto"), and so does decoding a format-7 archive; an older
  // CPU archive needs LibTorch's and OpenBLAS's kernels as it was made with
  // them (avx2 / Haswell: recorded, and compared), which shazip pins as it
  // loads LibTorch: it decodes from a file, from standard input, from a
  // named pipe, or as one of several archives back to back.
  const std::string bare = "env -u ATEN_CPU_CAPABILITY -u OPENBLAS_CORETYPE " + kBin;
  const std::string golden = std::string(SHAZIP_SOURCE_DIR) + "/tests/golden/";
  TempDir dir;
  const auto text = english(3000, 13);
  spit(dir / "x", text);
  REQUIRE(run(bare + " -q -c " + q(dir / "x") + " > " + q(dir / "x.shz")) == 0);
  const auto made = slurp(dir / "x.shz");
  size_t header_size = 0;
  CHECK(shazip::parse_header(made.data(), made.size(), &header_size).backend.cpu_capability == "auto");
  const auto old = slurp(golden + "v6/design.txt.shz");
  auto both = made;
  both.insert(both.end(), old.begin(), old.end());
  spit(dir / "both.shz", both);
  const auto design = slurp(golden + "design.txt");
  auto text_then_design = text;
  text_then_design.insert(text_then_design.end(), design.begin(), design.end());
  for (const std::string& input : {q(golden + "v6/design.txt.shz"), "< " + q(golden + "v6/design.txt.shz"),
                                   q(dir / "both.shz"), "< " + q(dir / "both.shz")}) {
    INFO(input);
    REQUIRE(run(bare + " -q -d -c " + input + " > " + q(dir / "out")) == 0);
    CHECK(slurp(dir / "out") == (input.find("both") != std::string::npos ? text_then_design : design));
  }
  // A named pipe, read once.
  REQUIRE(run("mkfifo " + q(dir / "fifo")) == 0);
  REQUIRE(run("(cat " + q(golden + "v6/design.txt.shz") + " > " + q(dir / "fifo") + " &); " + bare + " -q -d -c " +
              q(dir / "fifo") + " > " + q(dir / "out")) == 0);
  CHECK(slurp(dir / "out") == design);
  // Several inputs, the old archive among them, one of them on standard input.
  REQUIRE(run(bare + " -q -d -c " + q(dir / "x.shz") + " - < " + q(golden + "v6/design.txt.shz") + " > " +
              q(dir / "out")) == 0);
  CHECK(slurp(dir / "out") == text_then_design);
}

TEST_CASE("a format-7 archive codes the same with the reference BLAS and decodes with it", "[cli]") {
  // Debian's LibTorch calls the first sgemm_ the loader finds: with the
  // reference BLAS preloaded, a format-6 archive (trained through the BLAS)
  // no longer decodes, which shows the BLAS was replaced; a format-7 one must
  // still decode, and shazip must make the same payload as with OpenBLAS.
  const std::string ref = "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3";
  if (!std::ifstream(ref)) {
    WARN("no reference BLAS at " << ref << " (Debian's libblas3): nothing to compare");
    return;
  }
  const std::string with_ref = "env LD_PRELOAD=" + ref + " " + kBin;
  const std::string golden = std::string(SHAZIP_SOURCE_DIR) + "/tests/golden/";
  TempDir dir;
  if (run(with_ref + " -q -t " + q(golden + "v6/design-p2.txt.shz") + " 2>/dev/null") == 0) {
    WARN("the reference BLAS did not replace this build's: nothing to compare");
    return;
  }
  REQUIRE(run(with_ref + " -q -d -c " + q(golden + "v7/design-p2.txt.shz") + " > " + q(dir / "golden")) == 0);
  CHECK(slurp(dir / "golden") == slurp(golden + "design-p2.txt"));
  const auto text = english(6000, 12);
  spit(dir / "x", text);
  REQUIRE(run(kBin + " -q -c " + q(dir / "x") + " > " + q(dir / "ours.shz")) == 0);
  REQUIRE(run(with_ref + " -q -c " + q(dir / "x") + " > " + q(dir / "ref.shz")) == 0);
  CHECK(payload_of(slurp(dir / "ours.shz")) == payload_of(slurp(dir / "ref.shz")));  // headers name the BLAS
  REQUIRE(run(with_ref + " -q -d -c " + q(dir / "ours.shz") + " > " + q(dir / "out")) == 0);
  CHECK(slurp(dir / "out") == text);
}

TEST_CASE("several shazip processes at once do not interfere", "[cli]") {
  TempDir dir;
  std::string together, alone;
  for (int i = 0; i < 3; ++i) {
    const std::string name = "f" + std::to_string(i);
    spit(dir / name, english(15000 + 1000 * i, 20 + i));
    REQUIRE(run(kBin + " -q -1 -c " + q(dir / name) + " > " + q(dir / (name + ".alone"))) == 0);
    together += kBin + " -q -1 " + q(dir / name) + " & ";
  }
  REQUIRE(run("( " + together + "wait )") == 0);
  for (int i = 0; i < 3; ++i) {
    const std::string name = "f" + std::to_string(i);
    INFO(name);
    CHECK(slurp(dir / (name + ".shz")) == slurp(dir / (name + ".alone")));
  }
}

TEST_CASE("GPU: round trips, two runs give the same archive, the archive names the GPU", "[gpu][cli]") {
  if (capture(kBin + " -V").find("CUDA available") == std::string::npos) {
    WARN("no CUDA device or no CUDA build: [gpu] test skipped");
    return;
  }
  TempDir dir;
  // One stream of 10,000 positions (one GPU step each, so short): hundreds of
  // training steps, and a GPU preset's attention memory fills.
  const std::vector<uint8_t> text = english(10000, 21);
  spit(dir / "t", text);
  for (const char* level : {"-2", "-6"}) {  // the default; a GPU preset
    INFO("preset " << level);
    const std::string in = q(dir / "t"), a = q(dir / "a.shz"), b = q(dir / "b.shz");
    REQUIRE(run(kBin + " -q --device cuda " + level + " -c " + in + " > " + a) == 0);
    REQUIRE(run(kBin + " -q --device cuda " + level + " -c " + in + " > " + b) == 0);
    CHECK(slurp(dir / "a.shz") == slurp(dir / "b.shz"));
    CHECK(slurp(dir / "a.shz").size() < text.size() / 2);  // it learned (English-like text)
    REQUIRE(run(kBin + " -q -d -c " + a + " > " + q(dir / "back")) == 0);
    CHECK(slurp(dir / "back") == text);
    CHECK(capture(kBin + " -l " + a).find("backend          cuda, LibTorch") != std::string::npos);
    // Format 10: the GPU's archive is the CPU's, and decodes without a GPU.
    REQUIRE(run(kBin + " -q --device cpu " + level + " -c " + in + " > " + q(dir / "cpu.shz")) == 0);
    CHECK(payload_of(slurp(dir / "cpu.shz")) == payload_of(slurp(dir / "a.shz")));
    REQUIRE(run("CUDA_VISIBLE_DEVICES= " + kBin + " -q -d -c " + a + " > " + q(dir / "back-cpu")) == 0);
    CHECK(slurp(dir / "back-cpu") == text);
  }
}

TEST_CASE("GPU: noise is stored early, the coding stopped on the GPU", "[gpu][cli]") {
  if (capture(kBin + " -V").find("CUDA available") == std::string::npos) {
    WARN("no CUDA device or no CUDA build: [gpu] test skipped");
    return;
  }
  TempDir dir;
  const std::vector<uint8_t> noise = random_bytes(300 << 10, 7);
  spit(dir / "noise", noise);
  for (const char* level : {"-2", "-6"}) {
    INFO("preset " << level);
    const std::string said =
        capture("SHAZIP_NO_GLANCE=1 " + kBin + " -f --device cuda " + level + " " + q(dir / "noise") + " 2>&1");
    CHECK(said.find("stored: the model saved nothing over") != std::string::npos);
    CHECK(slurp(dir / "noise.shz").size() == noise.size() + shazip::kStoredHeaderSize);
    CHECK(run(kBin + " -q -t " + q(dir / "noise.shz")) == 0);
  }
}

TEST_CASE("shazip -b: sizes equal the shazip and zstd command lines, and JSON and CSV hold every field",
          "[cli][bench]") {
  TempDir dir;
  spit(dir / "t", english(5000, 11));
  const std::string json = capture(kBin + " -b -q --json -1 " + q(dir / "t") + " --plot " + q(dir / "curve.svg"));
  Json rows;
  REQUIRE_NOTHROW(rows = JsonParser(json).parse());
  REQUIRE(rows.kind == Json::kArray);
  REQUIRE(rows.items.size() == 4);
  auto size_of = [&](const std::string& cmd) { return std::stod("0" + capture(cmd + " | wc -c")); };
  REQUIRE(run("zstd --version >/dev/null 2>&1") == 0);  // tools/setup.sh installs it
  const std::string in = q(dir / "t");
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"shazip -1", kBin + " -q -1 -c " + in},
      {"zstd -3", "zstd -q -3 -c " + in},
      {"zstd -19", "zstd -q -19 -c " + in},
      {"zstd --ultra -22 --long", "zstd -q --ultra -22 --long -c " + in}};
  for (size_t i = 0; i < expected.size(); ++i) {
    const Json& r = rows.items[i];
    INFO(expected[i].first);
    REQUIRE(r.kind == Json::kObject);
    for (const char* key : {"file", "compressor", "original_bytes", "compressed_bytes", "ratio", "bits_per_char",
                            "compress_kb_per_s", "decompress_kb_per_s", "round_trip"}) {
      INFO(key);
      CHECK(r.get(key) != nullptr);
    }
    CHECK(r.get("compressor")->string == expected[i].first);
    CHECK(r.get("file")->string == dir / "t");
    CHECK(r.get("original_bytes")->number == 5000);
    CHECK(r.get("round_trip")->boolean);
    const double compressed = r.get("compressed_bytes")->number;
    CHECK(compressed == size_of(expected[i].second));
    CHECK(r.get("bits_per_char")->number == Approx(8 * compressed / 5000).epsilon(1e-5));
    CHECK(r.get("ratio")->number == Approx(5000 / compressed).epsilon(1e-5));
    CHECK(r.get("compress_kb_per_s")->number > 0);
    CHECK(r.get("decompress_kb_per_s")->number > 0);
    if (i == 0) {
      for (const char* key : {"header_bytes", "stored", "gave_up", "model_bits_per_char", "sha_rnn_bits_per_char",
                              "coder_overhead_bytes", "model_gflop_per_s", "step_gflop_per_s",
                              "gpu_peak_gflop_per_s", "curve"}) {
        INFO(key);
        REQUIRE(r.get(key) != nullptr);
      }
      // The model's arithmetic rates are measured; no GPU peak on the CPU.
      CHECK(r.get("model_gflop_per_s")->number > 0);
      CHECK(r.get("step_gflop_per_s")->number > 0);
      CHECK(r.get("gpu_peak_gflop_per_s")->number == 0);
      CHECK(!r.get("gave_up")->boolean);
      // The archive is the model's code length plus header and a few bytes of flush.
      const double model_bytes = r.get("model_bits_per_char")->number * 5000 / 8;
      const double header = r.get("header_bytes")->number;
      CHECK(compressed - header - model_bytes >= -1);
      CHECK(compressed - header - model_bytes <= 10);
      CHECK(r.get("sha_rnn_bits_per_char")->number > 0);
      const Json& curve = *r.get("curve");
      REQUIRE(curve.kind == Json::kArray);
      REQUIRE(curve.items.size() >= 2);
      CHECK(curve.items.back().items.at(0).number == 5000);
      CHECK(curve.items.back().items.at(1).number / 5000 == Approx(r.get("model_bits_per_char")->number).epsilon(1e-3));
    }
  }
  const std::string svg = capture("cat " + q(dir / "curve.svg"));
  CHECK(svg.find("<svg") != std::string::npos);
  CHECK(svg.find("bits per character") != std::string::npos);
  CHECK(svg.find("zstd -19") != std::string::npos);

  const std::string csv = capture(kBin + " -b -q --csv --no-zstd -1 " + in);
  CHECK(csv.rfind("file,compressor,original_bytes,compressed_bytes,ratio,bits_per_char,", 0) == 0);
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 2);
  CHECK(csv.find("," + std::to_string(static_cast<long long>(size_of(expected[0].second))) + ",") != std::string::npos);

  // Usage errors.
  CHECK(run(kBin + " -q --json " + in + " 2>/dev/null") == 1);
  CHECK(run(kBin + " -b -q --levels 1,x " + in + " 2>/dev/null") == 1);
  CHECK(run(kBin + " -b -d -q " + in + " 2>/dev/null") == 1);
  CHECK(run(kBin + " -b -q " + q(dir / "missing") + " >/dev/null 2>&1") == 2);
}
