// clip_engine._core: the Python binding of the library API (clip/clip.h and the headers it
// includes), nothing below it. The Python package (python/clip_engine/) sorts its inputs into
// the lists these functions take; this file converts them, runs the library with the GIL
// released and hands the results back as NumPy arrays.
//
// Results: a HostTensor the library returns is moved into a capsule that owns it and becomes
// the array's base, so the embeddings are never copied (one batch's call; a call over several
// batches writes each batch's rows into one array made for all of them).
//
// Threads: preprocessing (decode, resize, crop) runs on threads of its own outside any lock,
// so calls from several Python threads decode in parallel; a model's encoder passes run one
// at a time (a mutex per model; the library's compiled graphs and arenas are per model).
// Ctrl-C: SIGINT and SIGTERM are blocked in the calling thread while the GIL is released (so
// the threads the library starts inherit the mask and no signal lands in a compute thread);
// between batches the thread takes the GIL back, the pending signal is delivered, and
// PyErr_CheckSignals raises KeyboardInterrupt.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>
#include <new>
#include <thread>

#include "clip/clip.h"
#include "clip/webdataset.h"

namespace py = pybind11;

namespace {

// Errors the binding raises itself: a bad argument (InvalidInputError) and one input of a list
// that failed (InputError, with its index).
struct BadArgument : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct InputFailed : std::runtime_error {
  InputFailed(int64_t i, std::string r) : std::runtime_error(r), index(i), reason(std::move(r)) {}
  int64_t index;
  std::string reason;
};

// The exception classes, defined in clip_engine/_errors.py and handed over at import.
py::object g_error, g_invalid, g_oom, g_notfound, g_input;

// Blocks SIGINT and SIGTERM in this thread for its lifetime (threads started meanwhile
// inherit the mask); the old mask comes back at the end, and a pending signal with it.
struct SignalsHeld {
  sigset_t old;
  SignalsHeld() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, &old);
  }
  ~SignalsHeld() { pthread_sigmask(SIG_SETMASK, &old, nullptr); }
};

// f() without the GIL and with the signals held; then any signal that came is handled.
template <class F>
auto released(F&& f) {
  struct Check {
    ~Check() noexcept(false) {
      if (!std::uncaught_exceptions() && PyErr_CheckSignals() != 0) throw py::error_already_set();
    }
  } check;
  py::gil_scoped_release nogil;
  SignalsHeld held;
  return f();
}

// A host tensor as a NumPy array that owns it (no copy).
py::array to_numpy(clip::HostTensor&& t) {
  CLIP_CHECK(t.t.dtype == clip::DType::f32, "internal: expected f32 results, got %s", clip::dtype_name(t.t.dtype));
  auto* h = new clip::HostTensor(std::move(t));
  py::capsule owner(h, [](void* p) { delete static_cast<clip::HostTensor*>(p); });
  std::vector<py::ssize_t> shape;
  for (int i = 0; i < h->t.shape.nd; i++) shape.push_back((py::ssize_t)h->t.shape[i]);
  return py::array_t<float>(shape, h->f32(), owner);
}

// A C-contiguous float32 2-D array's rows as a host tensor (copied: logits' inputs).
clip::HostTensor from_numpy_2d(const py::array& a, const char* what) {
  if (a.ndim() != 2) throw BadArgument(std::string(what) + ": expected a 2-D float32 array");
  auto f = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
  clip::HostTensor h(clip::DType::f32, {(int64_t)f.shape(0), (int64_t)f.shape(1)});
  if (f.size()) std::memcpy(h.f32(), f.data(), (size_t)f.size() * sizeof(float));
  return h;
}

// for i in [0, n) on up to `threads` threads (the caller's one of them).
template <class F>
void parallel_for(size_t n, F&& f) {
  const size_t threads = std::min<size_t>(n, std::max(1u, std::thread::hardware_concurrency()));
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next++) < n;) f(i);
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; t++) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
}

// One image input, sorted by the Python side: a path, encoded bytes, or decoded pixels in one
// of Pillow's modes (an HxW or HxWxC uint8 array; "P" with its palette).
struct ImageInput {
  int kind = 0;  // 0 path, 1 bytes, 2 pixels
  std::string path;
  const uint8_t* data = nullptr;
  size_t size = 0;
  int h = 0, w = 0;
  clip::ImageMode mode = clip::ImageMode::RGB;
  std::vector<uint8_t> palette;
};

clip::ImageMode mode_from_name(const std::string& m) {
  using M = clip::ImageMode;
  if (m == "RGB") return M::RGB;
  if (m == "L") return M::L;
  if (m == "RGBA") return M::RGBA;
  if (m == "LA") return M::LA;
  if (m == "P") return M::P;
  if (m == "CMYK") return M::CMYK;
  if (m == "1") return M::One;
  throw BadArgument("image mode " + m + " is not one of RGB, L, RGBA, LA, P, CMYK, 1");
}

class PyModel {
 public:
  explicit PyModel(std::unique_ptr<clip::Model> m, int batch) : m_(std::move(m)), batch_(batch) {
    pc_ = m_->preprocess_config();
    pc_.resolution = m_->config().image_resolution;
  }

  clip::Model& model() { return *m_; }
  int batch_size() const { return batch_; }
  int resolution() const { return m_->config().image_resolution; }
  int context_length() const { return m_->config().text.context_length; }

  // The RGB bytes [R, R, 3] of one input into out; "" or the error.
  std::string preprocess_one(const ImageInput& in, uint8_t* out) const {
    try {
      if (in.kind == 0) {
        m_->preprocess_file(in.path, out);
        return "";
      }
      std::vector<uint8_t> rgb;
      if (in.kind == 1) {
        rgb = clip::preprocess_image_bytes_rgb8(in.data, in.size, "image bytes", pc_);
      } else {
        clip::DecodedImage im;
        im.width = in.w;
        im.height = in.h;
        im.mode = in.mode;
        im.pixels.assign(in.data, in.data + in.size);
        if (in.mode == clip::ImageMode::P) im.palette = in.palette;
        CLIP_CHECK(pc_.interpolation == "bicubic" || pc_.interpolation == "bilinear",
                   "interpolation \"%s\" is not supported (bicubic or bilinear)", pc_.interpolation.c_str());
        const auto f = pc_.interpolation == "bilinear" ? clip::ResampleFilter::bilinear : clip::ResampleFilter::bicubic;
        CLIP_CHECK(!pc_.convert_first || in.mode == clip::ImageMode::RGB || in.mode == clip::ImageMode::L,
                   "an array in mode %s for a model that converts to RGB first: give it as RGB",
                   clip::image_mode_name(in.mode));
        rgb = clip::resize_crop_rgb8(im, pc_.resolution, nullptr, pc_.resize_mode, f, pc_.fill);
      }
      std::memcpy(out, rgb.data(), rgb.size());
      return "";
    } catch (const std::bad_alloc&) {
      return "out of memory";
    } catch (const std::exception& e) {
      return e.what();
    }
  }

  // Inputs [begin, end) preprocessed into px (end - begin slots), their errors in err.
  void preprocess_range(const std::vector<ImageInput>& in, size_t begin, size_t end, uint8_t* px,
                        std::vector<std::string>& err) const {
    const size_t n = (size_t)m_->pixels_per_image();
    parallel_for(end - begin, [&](size_t i) { err[begin + i] = preprocess_one(in[begin + i], px + i * n); });
  }

  // Embeddings of a list of images; with errors_return, failed rows are NaN and named in
  // `errors`, else the first failure raises InputFailed.
  py::tuple encode_images(const py::list& items, int batch, bool normalize, bool errors_return) {
    std::vector<ImageInput> in = parse_images(items);
    std::vector<std::string> errors(in.size());
    py::array out = released([&] { return encode_images_nogil(in, batch, normalize, errors_return, errors); });
    return py::make_tuple(out, errors);
  }

  // Preprocessed images: RGB bytes [N, R, R, 3] (the model's input) and the per-input errors.
  py::tuple preprocess_images(const py::list& items, bool errors_return) {
    std::vector<ImageInput> in = parse_images(items);
    const int64_t R = resolution();
    py::array_t<uint8_t> px({(py::ssize_t)in.size(), (py::ssize_t)R, (py::ssize_t)R, (py::ssize_t)3});
    uint8_t* dst = px.mutable_data();
    std::vector<std::string> errors(in.size());
    released([&] {
      preprocess_range(in, 0, in.size(), dst, errors);
      return 0;
    });
    for (size_t i = 0; i < in.size(); i++)
      if (!errors[i].empty() && !errors_return) throw InputFailed((int64_t)i, errors[i]);
    return py::make_tuple(px, errors);
  }

  // RGB bytes [N, R, R, 3] -> embeddings (the model normalizes the pixels).
  py::array encode_rgb8(const py::array& rgb, int batch, bool normalize) {
    auto a = contiguous<uint8_t>(rgb);
    const int64_t R = resolution();
    if (a.ndim() != 4 || a.shape(1) != R || a.shape(2) != R || a.shape(3) != 3)
      throw BadArgument(clip::strprintf("expected uint8 RGB images [N, %lld, %lld, 3]", (long long)R, (long long)R));
    const uint8_t* p = a.data();
    const int64_t N = a.shape(0), n = m_->pixels_per_image();
    return released([&] {
      return chunks(N, batch, normalize, [&](int64_t b0, int64_t nb) { return m_->encode_rgb8(p + b0 * n, nb); });
    });
  }

  // Normalized pixels [N, 3, R, R] (what preprocess gives) -> embeddings.
  py::array encode_pixels(const py::array& pixels, int batch, bool normalize) {
    auto a = contiguous<float>(pixels);
    const int64_t R = resolution();
    if (a.ndim() != 4 || a.shape(1) != 3 || a.shape(2) != R || a.shape(3) != R)
      throw BadArgument(clip::strprintf("expected float32 pixels [N, 3, %lld, %lld]", (long long)R, (long long)R));
    const float* p = a.data();
    const int64_t N = a.shape(0), n = m_->pixels_per_image();
    return released([&] {
      return chunks(N, batch, normalize, [&](int64_t b0, int64_t nb) { return m_->encode_pixels(p + b0 * n, nb); });
    });
  }

  // RGB bytes [N, R, R, 3] -> normalized pixels [N, 3, R, R] (ToTensor + Normalize).
  py::array normalize_pixels(const py::array& rgb) {
    auto a = contiguous<uint8_t>(rgb);
    const int64_t R = resolution(), N = a.shape(0);
    py::array_t<float> out({(py::ssize_t)N, (py::ssize_t)3, (py::ssize_t)R, (py::ssize_t)R});
    float* dst = out.mutable_data();
    const uint8_t* src = a.data();
    const int64_t n = m_->pixels_per_image();
    released([&] {
      for (int64_t i = 0; i < N; i++) clip::normalize_rgb8(src + i * n, (int)R, pc_, dst + i * n);
      return 0;
    });
    return out;
  }

  // Token ids [N, context] (int32) of each text; per-text errors as for images.
  py::tuple tokenize(const std::vector<std::string>& texts, bool errors_return) {
    const clip::Tokenizer& tok = m_->tokenizer();
    const int ctx = context_length();
    py::array_t<int32_t> ids({(py::ssize_t)texts.size(), (py::ssize_t)ctx});
    int32_t* dst = ids.mutable_data();
    std::vector<std::string> errors(texts.size());
    released([&] {
      tokenize_into(tok, texts, dst, errors);
      return 0;
    });
    for (size_t i = 0; i < texts.size(); i++)
      if (!errors[i].empty() && !errors_return) throw InputFailed((int64_t)i, errors[i]);
    return py::make_tuple(ids, errors);
  }

  py::tuple encode_texts(const std::vector<std::string>& texts, int batch, bool normalize, bool errors_return) {
    const clip::Tokenizer& tok = m_->tokenizer();
    std::vector<std::string> errors(texts.size());
    py::array out = released([&]() -> py::array {
      const int64_t N = (int64_t)texts.size(), ctx = context_length();
      std::vector<int32_t> ids((size_t)(N * ctx));
      tokenize_into(tok, texts, ids.data(), errors);
      if (!errors_return)
        for (int64_t i = 0; i < N; i++)
          if (!errors[(size_t)i].empty()) throw InputFailed(i, errors[(size_t)i]);
      std::vector<int64_t> good;
      for (int64_t i = 0; i < N; i++)
        if (errors[(size_t)i].empty()) good.push_back(i);
      if ((int64_t)good.size() == N) return encode_token_rows(ids.data(), N, batch, normalize);
      std::vector<int32_t> kept(good.size() * (size_t)ctx);
      for (size_t j = 0; j < good.size(); j++)
        std::memcpy(&kept[j * ctx], &ids[(size_t)(good[j] * ctx)], (size_t)ctx * sizeof(int32_t));
      clip::HostTensor e = encode_tokens_host(kept.data(), (int64_t)good.size(), batch, normalize);
      return scatter(std::move(e), good, N);
    });
    return py::make_tuple(out, errors);
  }

  // Token ids [N, context] -> embeddings.
  py::array encode_tokens(const py::array& tokens, int batch, bool normalize) {
    if (tokens.ndim() != 2 || tokens.shape(1) != context_length())
      throw BadArgument(clip::strprintf("expected token ids [N, %d]", context_length()));
    auto a = py::array_t<int32_t, py::array::c_style | py::array::forcecast>::ensure(tokens);
    const int32_t* p = a.data();
    const int64_t N = a.shape(0);
    const int vocab = m_->config().text.vocab_size;
    for (int64_t i = 0; i < N * context_length(); i++)
      if (p[i] < 0 || p[i] >= vocab)
        throw BadArgument(clip::strprintf("token id %d (text %lld, position %lld) is outside the vocabulary of %d", p[i],
                                          (long long)(i / context_length()), (long long)(i % context_length()), vocab));
    return released([&] { return encode_token_rows(p, N, batch, normalize); });
  }

  py::array logits(const py::array& img, const py::array& txt) {
    clip::HostTensor a = from_numpy_2d(img, "logits: image embeddings");
    clip::HostTensor b = from_numpy_2d(txt, "logits: text embeddings");
    if (a.t.shape[1] != b.t.shape[1])
      throw BadArgument(clip::strprintf("logits: image embeddings %s and text embeddings %s do not match",
                                        a.t.shape.str().c_str(), b.t.shape.str().c_str()));
    return to_numpy(released([&] { return m_->logits(a, b); }));
  }

  // Median seconds of `repeats` C++ calls of encode_tokens on tokens [1, context] (the
  // baseline of bench/python_overhead.py: the same call without the binding around it).
  double time_encode_tokens(const py::array& tokens, int repeats) {
    auto a = py::array_t<int32_t, py::array::c_style | py::array::forcecast>::ensure(tokens);
    const int32_t* p = a.data();
    const int64_t N = a.shape(0);
    return released([&] {
      std::vector<double> s;
      for (int r = 0; r < repeats; r++) {
        auto t0 = std::chrono::steady_clock::now();
        std::lock_guard<std::mutex> lock(mu_);
        clip::HostTensor e = m_->encode_tokens(p, N);
        s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(s.begin(), s.end());
      return s.empty() ? 0.0 : s[s.size() / 2];
    });
  }

 private:
  template <class T>
  static py::array_t<T, py::array::c_style> contiguous(const py::array& a) {
    if (!py::isinstance<py::array_t<T>>(a))
      throw BadArgument(std::string("expected a ") + (std::is_same<T, float>::value ? "float32" : "uint8") + " array");
    return py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
  }

  std::vector<ImageInput> parse_images(const py::list& items) const {
    std::vector<ImageInput> in(items.size());
    for (size_t i = 0; i < in.size(); i++) {
      py::tuple t = items[i].cast<py::tuple>();  // (kind, payload, mode, palette)
      ImageInput& x = in[i];
      x.kind = t[0].cast<int>();
      if (x.kind == 0) {
        x.path = t[1].cast<std::string>();
      } else if (x.kind == 1) {
        // bytes are immutable and `items` keeps them alive for the call
        char* buf = nullptr;
        py::ssize_t len = 0;
        if (PyBytes_AsStringAndSize(t[1].ptr(), &buf, &len) != 0) throw py::error_already_set();
        x.data = reinterpret_cast<const uint8_t*>(buf);
        x.size = (size_t)len;
      } else {
        auto a = py::array_t<uint8_t, py::array::c_style>::ensure(t[1]);
        if (!a) throw BadArgument(clip::strprintf("image %zu: expected a C-contiguous uint8 array", i));
        x.mode = mode_from_name(t[2].cast<std::string>());
        const int C = clip::image_mode_channels(x.mode);
        if (!(a.ndim() == 3 && a.shape(2) == C) && !(a.ndim() == 2 && C == 1))
          throw BadArgument(clip::strprintf("image %zu: a %s array must be HxW%s", i, clip::image_mode_name(x.mode),
                                            C == 1 ? "" : clip::strprintf("x%d", C).c_str()));
        if (a.shape(0) < 1 || a.shape(1) < 1 || a.shape(0) > (1 << 30) || a.shape(1) > (1 << 30))
          throw BadArgument(clip::strprintf("image %zu: empty or too large (%lld x %lld)", i, (long long)a.shape(1),
                                            (long long)a.shape(0)));
        x.h = (int)a.shape(0);
        x.w = (int)a.shape(1);
        x.data = a.data();
        x.size = (size_t)a.size();
        if (x.mode == clip::ImageMode::P) {
          x.palette = t[3].cast<std::vector<uint8_t>>();
          x.palette.resize(768, 0);
        }
        items[i] = py::make_tuple(x.kind, a, t[2], t[3]);  // the contiguous array lives as long as the list
      }
    }
    return in;
  }

  void tokenize_into(const clip::Tokenizer& tok, const std::vector<std::string>& texts, int32_t* dst,
                     std::vector<std::string>& errors) const {
    const int ctx = context_length();
    for (size_t i = 0; i < texts.size(); i++) {
      try {
        clip::Encoded e = tok.encode(texts[i], ctx);
        std::memcpy(dst + i * ctx, e.ids.data(), (size_t)ctx * sizeof(int32_t));
      } catch (const std::exception& e) {
        errors[i] = e.what();
        std::fill(dst + i * ctx, dst + (i + 1) * ctx, 0);
      }
    }
  }

  // Rows b0..b0+nb through encode(b0, nb), `batch` at a time, into one result: a single call's
  // tensor as it is, several calls' rows copied into one.
  template <class F>
  clip::HostTensor chunks_host(int64_t N, int batch, bool normalize, F&& encode) {
    const int64_t B = batch > 0 ? batch : batch_;
    const int64_t E = m_->embed_dim();
    clip::HostTensor out;
    for (int64_t b0 = 0; b0 < N || (N == 0 && b0 == 0); b0 += B) {
      if (b0 > 0) check_signals();
      const int64_t nb = std::min(B, N - b0);
      clip::HostTensor e;
      if (nb > 0) {
        std::lock_guard<std::mutex> lock(mu_);
        e = encode(b0, nb);
      } else {
        e = clip::HostTensor(clip::DType::f32, {0, E});
      }
      if (normalize && nb > 0) clip::l2_normalize_rows(e.f32(), e.f32(), nb, E);
      if (nb >= N) return e;
      if (b0 == 0) out = clip::HostTensor(clip::DType::f32, {N, E});
      std::memcpy(out.f32() + b0 * E, e.f32(), (size_t)(nb * E) * sizeof(float));
    }
    return out;
  }
  template <class F>
  py::array chunks(int64_t N, int batch, bool normalize, F&& encode) {
    clip::HostTensor h = chunks_host(N, batch, normalize, std::forward<F>(encode));
    py::gil_scoped_acquire gil;
    return to_numpy(std::move(h));
  }

  clip::HostTensor encode_tokens_host(const int32_t* ids, int64_t N, int batch, bool normalize) {
    // Texts go to the model 8 batches at a time, as clip embed's pipeline hands them over (the
    // model batches each group by length).
    const int B = 8 * (batch > 0 ? batch : batch_);
    const int64_t ctx = context_length();
    return chunks_host(N, B, normalize, [&](int64_t b0, int64_t nb) { return m_->encode_tokens(ids + b0 * ctx, nb); });
  }
  py::array encode_token_rows(const int32_t* ids, int64_t N, int batch, bool normalize) {
    clip::HostTensor h = encode_tokens_host(ids, N, batch, normalize);
    py::gil_scoped_acquire gil;
    return to_numpy(std::move(h));
  }

  // Rows of e into rows `good` of an [N, E] tensor whose other rows are NaN.
  py::array scatter(clip::HostTensor&& e, const std::vector<int64_t>& good, int64_t N) {
    const int64_t E = m_->embed_dim();
    clip::HostTensor out(clip::DType::f32, {N, E});
    std::fill(out.f32(), out.f32() + N * E, std::nanf(""));
    for (size_t j = 0; j < good.size(); j++)
      std::memcpy(out.f32() + good[j] * E, e.f32() + (int64_t)j * E, (size_t)E * sizeof(float));
    py::gil_scoped_acquire gil;
    return to_numpy(std::move(out));
  }

  // Between batches: take the GIL back so that a pending Ctrl-C is handled (and raises).
  static void check_signals() {
    py::gil_scoped_acquire gil;
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &set, &old);  // a pending signal is delivered here
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }

  py::array encode_images_nogil(const std::vector<ImageInput>& in, int batch, bool normalize, bool errors_return,
                                std::vector<std::string>& errors) {
    const int64_t N = (int64_t)in.size(), E = m_->embed_dim(), n = m_->pixels_per_image();
    const int64_t B = batch > 0 ? batch : batch_;
    clip::HostTensor out;
    if (N == 0) {
      py::gil_scoped_acquire gil;
      return to_numpy(clip::HostTensor(clip::DType::f32, {0, E}));
    }
    std::vector<uint8_t> px;
    for (int64_t b0 = 0; b0 < N; b0 += B) {
      if (b0 > 0) check_signals();
      const int64_t nb = std::min(B, N - b0);
      px.resize((size_t)(nb * n));
      preprocess_range(in, (size_t)b0, (size_t)(b0 + nb), px.data(), errors);
      std::vector<int64_t> good;
      for (int64_t i = b0; i < b0 + nb; i++) {
        if (errors[(size_t)i].empty()) {
          good.push_back(i);
        } else if (!errors_return) {
          throw InputFailed(i, errors[(size_t)i]);
        }
      }
      for (size_t j = 0; j < good.size(); j++)  // the good rows to the front
        if ((int64_t)j != good[j] - b0) std::memcpy(&px[j * n], &px[(size_t)((good[j] - b0) * n)], (size_t)n);
      clip::HostTensor e;
      if (!good.empty()) {
        std::lock_guard<std::mutex> lock(mu_);
        e = m_->encode_rgb8(px.data(), (int64_t)good.size());
      }
      if (normalize && !good.empty()) clip::l2_normalize_rows(e.f32(), e.f32(), (int64_t)good.size(), E);
      if (nb == N && (int64_t)good.size() == N) {
        py::gil_scoped_acquire gil;
        return to_numpy(std::move(e));
      }
      if (b0 == 0) {
        out = clip::HostTensor(clip::DType::f32, {N, E});
        std::fill(out.f32(), out.f32() + N * E, std::nanf(""));
      }
      for (size_t j = 0; j < good.size(); j++)
        std::memcpy(out.f32() + good[j] * E, e.f32() + (int64_t)j * E, (size_t)E * sizeof(float));
    }
    py::gil_scoped_acquire gil;
    return to_numpy(std::move(out));
  }

 public:
  // One WebDataset shard into part `part` of out_dir (clip/webdataset.h: `clip embed
  // --webdataset`'s own function); Ctrl-C stops it between batches, leaving no part.
  py::dict embed_shard(const std::string& shard, const std::string& out_dir, const std::string& part) {
    clip::ShardResult r = released([&] {
      std::lock_guard<std::mutex> lock(mu_);
      clip::ShardOptions o;
      o.batch_size = batch_;
      o.stop = [] {  // SIGINT and SIGTERM are held in this thread (released), so they wait pending
        sigset_t p;
        sigpending(&p);
        return sigismember(&p, SIGINT) == 1 || sigismember(&p, SIGTERM) == 1;
      };
      return clip::embed_shard(*m_, shard, out_dir, part, o);
    });
    py::dict d;
    d["written"] = r.written;
    d["stopped"] = r.stopped;
    d["samples"] = r.samples;
    d["failed"] = r.failed;
    d["skipped_members"] = r.skipped_members;
    d["shard_error"] = r.shard_error;
    d["read_s"] = r.read_s;
    d["embed_s"] = r.embed_s;
    d["write_s"] = r.write_s;
    d["decode_wait_s"] = r.decode_wait_s;
    return d;
  }

 private:

  std::unique_ptr<clip::Model> m_;
  int batch_;
  clip::PreprocessConfig pc_;
  std::mutex mu_;
};

clip::ModelOptions options(const std::string& device, const std::string& dtype, const std::string& vocab,
                           int batch_size, const std::string& activation) {
  clip::ModelOptions o;
  o.device = clip::parse_device(device);
  o.dtype = clip::parse_compute_dtype(dtype, o.device);
  o.vocab_path = vocab;
  o.max_batch = batch_size > 0 ? batch_size : clip::default_batch_size(o.device);
  if (!activation.empty()) o.activation = clip::act_from_name(activation.c_str());
  return o;
}

py::dict info(PyModel& pm) {
  clip::Model& m = pm.model();
  const clip::ModelConfig& c = m.config();
  const clip::PreprocessConfig& p = m.preprocess_config();
  py::dict vision, text, pre, d;
  vision["family"] = clip::vision_family_name(c.vision_family);
  vision["summary"] = clip::vision_summary(c);
  vision["image_resolution"] = c.image_resolution;
  vision["tokens"] = clip::image_tokens(c);
  if (c.vision_family == clip::VisionFamily::resnet) {
    vision["width"] = c.resnet.width;
    vision["layers"] = std::vector<int>(c.resnet.layers, c.resnet.layers + 4);
    vision["heads"] = c.resnet.heads;
  } else {
    vision["patch_size"] = c.vit.patch_size;
    vision["width"] = c.vit.width;
    vision["layers"] = c.vit.layers;
    vision["heads"] = c.vit.heads;
    vision["mlp"] = c.vit.mlp;
  }
  text["context_length"] = c.text.context_length;
  text["vocab_size"] = c.text.vocab_size;
  text["width"] = c.text.width;
  text["layers"] = c.text.layers;
  text["heads"] = c.text.heads;
  text["mlp"] = c.text.mlp;
  text["causal"] = c.text.causal;
  text["tokenizer"] = !m.has_tokenizer() ? "none" : m.tokenizer().is_sentencepiece() ? "sentencepiece" : "bpe";
  pre["resolution"] = c.image_resolution;
  pre["mean"] = std::vector<float>(p.mean, p.mean + 3);
  pre["std"] = std::vector<float>(p.std, p.std + 3);
  pre["interpolation"] = p.interpolation;
  pre["resize_mode"] = clip::resize_mode_name(p.resize_mode);
  pre["fill"] = p.fill;
  pre["convert_first"] = p.convert_first;
  d["embed_dim"] = c.embed_dim;
  d["vision"] = vision;
  d["text"] = text;
  d["preprocess"] = pre;
  d["activation"] = clip::act_name(c.activation);
  d["layer_norm_eps"] = c.layer_norm_eps;
  d["logit_scale"] = m.logit_scale();
  d["logit_bias"] = m.logit_bias();
  d["sigmoid_scores"] = m.sigmoid_scores();
  d["device"] = clip::device_name(m.device());
  d["dtype"] = clip::dtype_name(m.dtype());
  d["batch_size"] = pm.batch_size();
  d["notes"] = m.notes();
  return d;
}

void set_error(const py::object& cls, const char* what) { PyErr_SetString(cls.ptr(), what); }

}  // namespace

PYBIND11_MODULE(_core, mod) {
  mod.doc() = "clip_engine's native module: the library API of clip/clip.h (use the clip_engine package)";

  mod.def(
      "_set_error_classes",
      [](py::object error, py::object invalid, py::object oom, py::object notfound, py::object input) {
        g_error = std::move(error);
        g_invalid = std::move(invalid);
        g_oom = std::move(oom);
        g_notfound = std::move(notfound);
        g_input = std::move(input);
      },
      "The exception classes of clip_engine._errors (called once at import).");
  py::register_exception_translator([](std::exception_ptr p) {
    if (!p) return;
    if (!g_error) return;  // before the package set them: pybind11's own translation
    try {
      std::rethrow_exception(p);
    } catch (const InputFailed& e) {
      PyObject* exc = PyObject_CallFunction(g_input.ptr(), "Ls", (long long)e.index, e.reason.c_str());
      if (!exc) return;
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc)), exc);
      Py_DECREF(exc);
    } catch (const BadArgument& e) {
      set_error(g_invalid, e.what());
    } catch (const clip::OutOfMemory& e) {
      set_error(g_oom, e.what());
    } catch (const clip::NotFound& e) {
      set_error(g_notfound, e.what());
    } catch (const std::bad_alloc&) {
      set_error(g_oom, "out of memory");
    } catch (const clip::Error& e) {
      set_error(g_error, e.what());
    }
  });

  py::class_<PyModel>(mod, "Model")
      .def_static(
          "load",
          [](const std::string& path, const std::string& device, const std::string& dtype, const std::string& vocab,
             int batch_size, const std::string& activation) {
            clip::ModelOptions o = options(device, dtype, vocab, batch_size, activation);
            auto m = released([&] { return clip::Model::load(path, o); });
            return std::make_unique<PyModel>(std::move(m), o.max_batch);
          },
          py::arg("path"), py::arg("device"), py::arg("dtype"), py::arg("vocab"), py::arg("batch_size"),
          py::arg("activation"))
      .def_static(
          "random",
          [](const std::string& arch, uint64_t seed, const std::string& device, const std::string& dtype,
             int batch_size) {
            clip::ModelOptions o = options(device, dtype, "", batch_size, "");
            auto m = released([&] { return clip::Model::random(arch, seed, o); });
            return std::make_unique<PyModel>(std::move(m), o.max_batch);
          },
          py::arg("arch"), py::arg("seed"), py::arg("device"), py::arg("dtype"), py::arg("batch_size"))
      .def("info", &info)
      .def_property_readonly("embed_dim", [](PyModel& m) { return m.model().embed_dim(); })
      .def_property_readonly("resolution", &PyModel::resolution)
      .def_property_readonly("context_length", &PyModel::context_length)
      .def_property_readonly("batch_size", &PyModel::batch_size)
      .def_property_readonly("has_tokenizer", [](PyModel& m) { return m.model().has_tokenizer(); })
      .def_property_readonly("logit_scale", [](PyModel& m) { return m.model().logit_scale(); })
      .def_property_readonly("logit_bias", [](PyModel& m) { return m.model().logit_bias(); })
      .def_property_readonly("sigmoid_scores", [](PyModel& m) { return m.model().sigmoid_scores(); })
      .def("encode_images", &PyModel::encode_images)
      .def("preprocess_images", &PyModel::preprocess_images)
      .def("encode_rgb8", &PyModel::encode_rgb8)
      .def("encode_pixels", &PyModel::encode_pixels)
      .def("normalize_pixels", &PyModel::normalize_pixels)
      .def("tokenize", &PyModel::tokenize)
      .def("encode_texts", &PyModel::encode_texts)
      .def("encode_tokens", &PyModel::encode_tokens)
      .def("logits", &PyModel::logits)
      .def("save_native",
           [](PyModel& m, const std::string& path, const std::string& dtype) {
             const clip::DType t = dtype == "f16" ? clip::DType::f16 : dtype == "bf16" ? clip::DType::bf16 : clip::DType::f32;
             if (dtype != "f16" && dtype != "bf16" && dtype != "f32") throw BadArgument("dtype: f16, bf16 or f32");
             released([&] {
               m.model().save_native(path, t);
               return 0;
             });
           })
      .def("_time_encode_tokens", &PyModel::time_encode_tokens)
      .def("embed_shard", &PyModel::embed_shard, py::arg("shard"), py::arg("out_dir"), py::arg("part"));

  mod.def(
      "shard_plan",
      [](const std::vector<std::string>& patterns, int index, int count) {
        std::vector<std::string> shards = clip::expand_shard_patterns(patterns);
        clip::ShardSelection sel = clip::resolve_shard_selection(index, count);
        py::dict d;
        d["shards"] = shards;
        d["selected"] = clip::select_shards(shards.size(), sel);
        std::vector<std::string> parts;
        for (size_t i = 0; i < shards.size(); i++) parts.push_back(clip::part_name(i, shards.size()));
        d["parts"] = parts;
        d["index"] = sel.index;
        d["count"] = sel.count;
        d["source"] = sel.source;
        return d;
      },
      py::arg("patterns"), py::arg("index") = -1, py::arg("count") = -1,
      "clip embed --webdataset's shards: every pattern expanded and checked, the part name of each, the ones this "
      "task runs (--shard-index/--shard-count, else the Slurm array's variables, else all).");
  mod.def("part_complete", &clip::part_complete, py::arg("out_dir"), py::arg("part"));

  mod.def("arch_names", &clip::arch_names, "The named architectures clip_engine.random takes.");
  mod.def(
      "describe_checkpoint",
      [](const std::string& path, const std::string& vocab, bool json) {
        clip::CheckpointOptions o;
        o.vocab_path = vocab;
        return released([&] { return clip::describe_checkpoint(path, o, json); });
      },
      py::arg("path"), py::arg("vocab") = "", py::arg("json") = false);
  mod.def("normalize_rows", [](const py::array& x) {
    clip::HostTensor h = from_numpy_2d(x, "normalize");
    clip::l2_normalize_rows(h.f32(), h.f32(), h.t.shape[0], h.t.shape[1]);
    return to_numpy(std::move(h));
  });
  mod.def("softmax_rows", [](const py::array& x) {
    clip::HostTensor h = from_numpy_2d(x, "softmax");
    clip::softmax_rows(h.f32(), h.f32(), h.t.shape[0], h.t.shape[1]);
    return to_numpy(std::move(h));
  });
  mod.def("cpu_backend_info", &clip::cpu_backend_info);
  // NumPy 2 changed the dtype struct that pybind11 before 2.12 reads: __init__.py refuses that pair.
  mod.attr("_pybind11_version") = py::make_tuple(PYBIND11_VERSION_MAJOR, PYBIND11_VERSION_MINOR);
}
