// Disk image probing and conversion through qemu-img. The format is always probed from the
// content (never from a name or a descriptor) and then passed explicitly to the conversion,
// so qemu-img cannot re-guess it. Sources that pull in other files (backing files, external
// extents) are refused: an image from a package must not read host files.
#include "vandra/ovf/disk_image.h"

#include <unistd.h>

#include <charconv>
#include <nlohmann/json.hpp>

#include "vandra/common/scope_guard.h"
#include "vandra/common/subprocess.h"

namespace vandra::ovf {
namespace {

// Parses qemu-img's "-p" output: "    (12.34/100%)\r" repeated. Feeds every complete
// percentage to the callback; partial records are kept for the next chunk.
class ProgressParser {
 public:
  explicit ProgressParser(const std::function<void(double)>& cb) : cb_(cb) {}

  void feed(std::string_view chunk) {
    buf_.append(chunk);
    size_t start = 0;
    for (;;) {
      const size_t open = buf_.find('(', start);
      if (open == std::string::npos) {
        buf_.clear();
        return;
      }
      const size_t slash = buf_.find('/', open);
      if (slash == std::string::npos) {
        buf_.erase(0, open);
        return;
      }
      double pct = 0;
      const char* first = buf_.data() + open + 1;
      const char* last = buf_.data() + slash;
      auto [p, ec] = std::from_chars(first, last, pct);
      if (ec == std::errc() && p == last && cb_ && pct >= 0 && pct <= 100) {
        cb_(pct / 100.0);
      }
      start = slash + 1;
    }
  }

 private:
  const std::function<void(double)>& cb_;
  std::string buf_;
};

Result<ImageInfo> parseInfo(const std::string& path, const std::string& text) {
  // nlohmann throws on malformed input; keep exceptions inside this function.
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return fail(ErrorCode::DiskImageInvalid,
                "qemu-img info gave unreadable output for '" + path + "'");
  }
  ImageInfo info;
  const auto fmt = j.find("format");
  const auto vsize = j.find("virtual-size");
  if (fmt == j.end() || !fmt->is_string() || vsize == j.end() || !vsize->is_number_unsigned()) {
    return fail(ErrorCode::DiskImageInvalid,
                "'" + path + "' is not a disk image qemu-img understands");
  }
  info.format = fmt->get<std::string>();
  info.virtual_size = vsize->get<uint64_t>();
  if (auto a = j.find("actual-size"); a != j.end() && a->is_number_unsigned()) {
    info.actual_size = a->get<uint64_t>();
  }
  if (auto b = j.find("backing-filename"); b != j.end() && b->is_string()) {
    info.external_file = b->get<std::string>();
  }
  const auto fs = j.find("format-specific");
  if (fs != j.end() && fs->is_object()) {
    const auto data = fs->find("data");
    if (data != fs->end() && data->is_object()) {
      if (auto ct = data->find("create-type"); ct != data->end() && ct->is_string()) {
        info.subformat = ct->get<std::string>();
      }
      if (auto df = data->find("data-file");
          df != data->end() && df->is_string() && info.external_file.empty()) {
        info.external_file = df->get<std::string>();
      }
      // VMDK extents must live inside the image file itself.
      if (auto ex = data->find("extents"); ex != data->end() && ex->is_array()) {
        const auto self = j.find("filename");
        for (const auto& e : *ex) {
          auto fn = e.is_object() ? e.find("filename") : e.end();
          if (fn != e.end() && fn->is_string() && self != j.end() && *fn != *self &&
              info.external_file.empty()) {
            info.external_file = fn->get<std::string>();
          }
        }
      }
    }
  }
  return info;
}

// A path starting with '-' would be read by qemu-img as an option.
std::string argPath(const std::string& path) {
  return path.starts_with("-") ? "./" + path : path;
}

}  // namespace

Result<ImageInfo> probeImage(const std::string& path) {
  if (::access(path.c_str(), R_OK) != 0) {
    Error e = Error::fromErrno("Cannot read disk image '" + path + "'");
    if (e.sys_errno == ENOENT) {
      e.code = ErrorCode::NotFound;
    }
    return fail(std::move(e));
  }
  // No -f: the format comes from the content. Paths go through argv, never a shell.
  auto out = runCapture({"qemu-img", "info", "--output=json", argPath(path)});
  if (!out) {
    if (out.error().code == ErrorCode::Subprocess) {
      return fail(Error(ErrorCode::DiskImageInvalid, "'" + path + "' is not a readable disk image")
                      .withCause(std::move(out).error()));
    }
    return fail(std::move(out).error());
  }
  return parseInfo(path, *out);
}

Result<void> convertImage(const std::string& src, const std::string& dst,
                          const std::string& dst_format, uint64_t expected_capacity,
                          const std::function<void(double)>& progress,
                          const std::string& backing_within) {
  std::vector<std::string> fmt_args;
  std::string want_format;
  if (dst_format == "qcow2") {
    fmt_args = {"-O", "qcow2"};
    want_format = "qcow2";
  } else if (dst_format == "vmdk-stream") {
    fmt_args = {"-O", "vmdk", "-o", "subformat=streamOptimized"};
    want_format = "vmdk";
  } else {
    return fail(ErrorCode::InvalidArgument,
                "Unknown target format '" + dst_format + "' (expected qcow2 or vmdk-stream)");
  }
  VANDRA_TRY_ASSIGN(const ImageInfo info, probeImage(src));
  const bool trusted_backing = !backing_within.empty() && info.format == "qcow2" &&
                               info.external_file.rfind(backing_within + "/", 0) == 0 &&
                               info.external_file.find("/../") == std::string::npos;
  if (!info.external_file.empty() && !trusted_backing) {
    return fail(ErrorCode::DiskImageInvalid, "'" + src + "' reads another file ('" +
                                                 info.external_file +
                                                 "'); only self-contained images are converted");
  }
  if (expected_capacity != 0 && info.virtual_size != expected_capacity) {
    return fail(ErrorCode::DiskImageInvalid,
                "'" + src + "' has a virtual size of " + std::to_string(info.virtual_size) +
                    " bytes but " + std::to_string(expected_capacity) + " bytes are expected");
  }

  auto remove_dst = defer([&] { ::unlink(dst.c_str()); });
  std::vector<std::string> argv = {"qemu-img", "convert", "-p", "-f", info.format};
  argv.insert(argv.end(), fmt_args.begin(), fmt_args.end());
  argv.push_back(argPath(src));
  argv.push_back(argPath(dst));
  VANDRA_TRY_ASSIGN(auto proc,
                    Subprocess::start(argv, {.capture_stdout = true, .capture_stderr = true}));
  ProgressParser parser(progress);
  VANDRA_TRY(proc.drainStdout([&](std::string_view chunk) { parser.feed(chunk); }));
  VANDRA_TRY_ASSIGN(const ExitStatus st, proc.wait());
  if (!st.ok()) {
    return fail(ErrorCode::Subprocess, "qemu-img convert of '" + src + "' failed (exit " +
                                           std::to_string(st.code) + "): " + proc.stderrText());
  }
  // Check what was written rather than trusting the exit status alone.
  VANDRA_TRY_ASSIGN(const ImageInfo out, probeImage(dst));
  if (out.format != want_format || out.virtual_size != info.virtual_size) {
    return fail(ErrorCode::DiskImageInvalid, "Converted image '" + dst + "' is " + out.format +
                                                 " of " + std::to_string(out.virtual_size) +
                                                 " bytes; expected " + want_format + " of " +
                                                 std::to_string(info.virtual_size));
  }
  if (progress) {
    progress(1.0);
  }
  remove_dst.dismiss();
  return {};
}

}  // namespace vandra::ovf
