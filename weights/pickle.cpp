// A restricted pickle reader for torch checkpoints (data.pkl inside torch.save and
// TorchScript zips). It never executes anything: it understands the opcodes of protocols
// 0-5 that torch writes, and a fixed set of globals, each replaced by a data constructor:
//   torch._utils._rebuild_tensor_v2 / _rebuild_tensor   -> a tensor view of a storage
//   torch._utils._rebuild_parameter(_with_state)         -> its data tensor
//   torch.{Half,Float,BFloat16,Double,Long,Int,...}Storage (in persistent ids) -> storage
//   collections.OrderedDict                               -> dict
//   torch.device                                          -> its string
//   __torch__.*  (TorchScript module classes)             -> a plain attribute dict
// Any other global (os.system, builtins.eval, ...) is refused with an error naming it.
// Objects live in one arena and refer to each other by index, so cycles and deep chains
// cost nothing to free; the stack, memo and object count are capped, and the walk that
// collects tensors is bounded in depth and in total visits.
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "weights/formats.h"

namespace clip::weights_detail {

namespace {

enum class K : uint8_t { none, boolean, integer, real, str, bytes, tuple, list, dict, set,
                         global, object, storage, tensor };

struct Obj {
  K k = K::none;
  int64_t i = 0;  // int/bool value; storage numel; tensor storage offset
  double f = 0;
  std::string s;               // str/bytes; global "module.name"; object class; storage key
  std::vector<int32_t> items;  // tuple/list/set; dict/object: key, value, key, value, ...
  RawType type = RawType::f32;  // storage, tensor
  int32_t storage = -1;         // tensor: its storage object
  std::vector<int64_t> shape, stride;  // tensor
};

const char* kind_name(K k) {
  switch (k) {
    case K::none: return "None";
    case K::boolean: return "bool";
    case K::integer: return "int";
    case K::real: return "float";
    case K::str: return "str";
    case K::bytes: return "bytes";
    case K::tuple: return "tuple";
    case K::list: return "list";
    case K::dict: return "dict";
    case K::set: return "set";
    case K::global: return "global";
    case K::object: return "object";
    case K::storage: return "storage";
    case K::tensor: return "tensor";
  }
  return "?";
}

bool storage_type(const std::string& g, RawType* t) {
  static const std::pair<const char*, RawType> table[] = {
      {"torch.HalfStorage", RawType::f16},    {"torch.FloatStorage", RawType::f32},
      {"torch.BFloat16Storage", RawType::bf16}, {"torch.DoubleStorage", RawType::f64},
      {"torch.LongStorage", RawType::i64},    {"torch.IntStorage", RawType::i32},
      {"torch.ShortStorage", RawType::i16},   {"torch.CharStorage", RawType::i8},
      {"torch.ByteStorage", RawType::u8},     {"torch.BoolStorage", RawType::boolean}};
  for (auto& e : table)
    if (g == e.first) {
      *t = e.second;
      return true;
    }
  return false;
}

bool global_allowed(const std::string& g) {
  RawType t;
  if (storage_type(g, &t)) return true;
  if (g.rfind("__torch__.", 0) == 0) return true;
  return g == "collections.OrderedDict" || g == "torch._utils._rebuild_tensor_v2" ||
         g == "torch._utils._rebuild_tensor" || g == "torch._utils._rebuild_parameter" ||
         g == "torch._utils._rebuild_parameter_with_state" || g == "torch.device";
}

class Machine {
 public:
  Machine(const uint8_t* p, size_t n, const std::string& name, const PickleLimits& lim)
      : p_(p), n_(n), name_(name), lim_(lim) {}

  int32_t run();
  const Obj& obj(int32_t i) const { return objs_[(size_t)i]; }
  // Collects (name, tensor object) pairs below `root`, names joined with '.'.
  void collect(int32_t root, std::vector<std::pair<std::string, int32_t>>& out);
  [[noreturn]] void error(const char* what) const {
    fail("%s: bad pickle at byte %zu: %s", name_.c_str(), pos_, what);
  }

 private:
  // --- input ---
  void need(size_t k) {
    if (k > n_ - pos_) fail("%s: truncated pickle (needs %zu more bytes at byte %zu of %zu)",
                            name_.c_str(), k, pos_, n_);
  }
  uint64_t le(size_t k) {
    need(k);
    uint64_t v = 0;
    for (size_t j = 0; j < k; j++) v |= (uint64_t)p_[pos_ + j] << (8 * j);
    pos_ += k;
    return v;
  }
  std::string bytes(uint64_t k) {
    if (k > n_ - pos_) need(n_ - pos_ + 1);
    std::string s((const char*)p_ + pos_, (size_t)k);
    pos_ += (size_t)k;
    return s;
  }
  std::string line() {
    size_t start = pos_;
    while (pos_ < n_ && p_[pos_] != '\n') pos_++;
    if (pos_ >= n_) fail("%s: truncated pickle (unterminated line at byte %zu)", name_.c_str(),
                         start);
    std::string s((const char*)p_ + start, pos_ - start);
    pos_++;
    return s;
  }
  // --- objects ---
  int32_t make(K k) {
    if (objs_.size() >= lim_.max_objects) error("too many objects");
    objs_.emplace_back();
    objs_.back().k = k;
    return (int32_t)(objs_.size() - 1);
  }
  int32_t make_int(int64_t v, K k = K::integer) {
    int32_t o = make(k);
    objs_[(size_t)o].i = v;
    return o;
  }
  int32_t make_str(std::string s, K k = K::str) {
    int32_t o = make(k);
    objs_[(size_t)o].s = std::move(s);
    return o;
  }
  void push(int32_t o) {
    if (stack_.size() >= lim_.max_stack) error("stack too deep");
    stack_.push_back(o);
  }
  int32_t pop() {
    if (stack_.size() <= base()) error("stack underflow");
    int32_t o = stack_.back();
    stack_.pop_back();
    return o;
  }
  int32_t& top() {
    if (stack_.size() <= base()) error("stack underflow");
    return stack_.back();
  }
  size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
  std::vector<int32_t> pop_mark() {
    if (marks_.empty()) error("no MARK on the stack");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<int32_t> v(stack_.begin() + (std::ptrdiff_t)m, stack_.end());
    stack_.resize(m);
    return v;
  }
  void memo_put(uint64_t idx, int32_t o) {
    if (memo_.size() >= lim_.max_memo && !memo_.count(idx)) error("memo too large");
    memo_[idx] = o;
  }
  int32_t memo_get(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) error("memo key not found");
    return it->second;
  }
  int64_t as_int(int32_t o, const char* what) {
    const Obj& x = obj(o);
    if (x.k != K::integer && x.k != K::boolean)
      fail("%s: bad pickle: %s must be an int, got %s", name_.c_str(), what, kind_name(x.k));
    return x.i;
  }
  void dict_set(int32_t d, int32_t key, int32_t value) {
    Obj& x = objs_[(size_t)d];
    if (x.k != K::dict && x.k != K::object) error("SETITEM on a non-dict");
    x.items.push_back(key);
    x.items.push_back(value);
  }
  int32_t global(const std::string& module, const std::string& nm) {
    std::string g = module + "." + nm;
    if (!global_allowed(g))
      fail("%s: pickle refers to the global '%s', which is not allowed (only torch tensor "
           "and storage constructors, collections.OrderedDict and __torch__ module classes "
           "are; nothing is ever executed)",
           name_.c_str(), g.c_str());
    return make_str(g, K::global);
  }
  int32_t reduce(int32_t callable, int32_t args);
  int32_t rebuild_tensor(const std::vector<int32_t>& a, bool v2);
  int32_t persistent_load(int32_t pid);
  void build(int32_t target, int32_t state);

  void walk(int32_t o, const std::string& prefix, int depth,
            std::vector<std::pair<std::string, int32_t>>& out);

  const uint8_t* p_;
  size_t n_, pos_ = 0;
  std::string name_;
  PickleLimits lim_;
  std::vector<Obj> objs_;
  std::vector<int32_t> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, int32_t> memo_;
  size_t visits_ = 0;
};

int32_t Machine::persistent_load(int32_t pid) {
  const Obj& t = obj(pid);
  if (t.k != K::tuple || t.items.size() != 5 || obj(t.items[0]).k != K::str ||
      obj(t.items[0]).s != "storage")
    fail("%s: bad pickle: unsupported persistent id (expected ('storage', type, key, "
         "location, numel))", name_.c_str());
  const Obj& ty = obj(t.items[1]);
  const Obj& key = obj(t.items[2]);
  RawType rt;
  if (ty.k != K::global || !storage_type(ty.s, &rt))
    fail("%s: bad pickle: persistent id names no known storage type", name_.c_str());
  if (key.k != K::str && key.k != K::integer)
    fail("%s: bad pickle: storage key must be a string", name_.c_str());
  std::string k = key.k == K::str ? key.s : std::to_string(key.i);
  int64_t numel = as_int(t.items[4], "storage numel");
  if (numel < 0) error("negative storage size");
  int32_t o = make(K::storage);
  Obj& s = objs_[(size_t)o];
  s.s = k;
  s.type = rt;
  s.i = numel;
  return o;
}

int32_t Machine::rebuild_tensor(const std::vector<int32_t>& a, bool v2) {
  if (a.size() < 4 || (v2 && a.size() < 6))
    fail("%s: bad pickle: tensor rebuild with %zu arguments", name_.c_str(), a.size());
  if (obj(a[0]).k != K::storage)
    fail("%s: bad pickle: tensor rebuild without a storage", name_.c_str());
  int64_t offset = as_int(a[1], "storage offset");
  const Obj& sz = obj(a[2]);
  const Obj& st = obj(a[3]);
  if ((sz.k != K::tuple && sz.k != K::list) || (st.k != K::tuple && st.k != K::list))
    fail("%s: bad pickle: tensor size and stride must be tuples", name_.c_str());
  if (sz.items.size() != st.items.size())
    fail("%s: bad pickle: tensor size has %zu dims but stride %zu", name_.c_str(),
         sz.items.size(), st.items.size());
  if (sz.items.size() > 16) fail("%s: bad pickle: tensor with %zu dims", name_.c_str(),
                                 sz.items.size());
  std::vector<int64_t> shape, stride;
  for (size_t j = 0; j < sz.items.size(); j++) {
    int64_t d = as_int(sz.items[j], "tensor size"), s = as_int(st.items[j], "tensor stride");
    if (d < 0 || s < 0) fail("%s: bad pickle: negative tensor size or stride", name_.c_str());
    shape.push_back(d);
    stride.push_back(s);
  }
  if (offset < 0) fail("%s: bad pickle: negative storage offset", name_.c_str());
  int32_t o = make(K::tensor);
  Obj& t = objs_[(size_t)o];
  t.storage = a[0];
  t.type = obj(a[0]).type;
  t.i = offset;
  t.shape = std::move(shape);
  t.stride = std::move(stride);
  return o;
}

int32_t Machine::reduce(int32_t callable, int32_t args) {
  const Obj& c = obj(callable);
  const Obj& a = obj(args);
  if (c.k != K::global) fail("%s: bad pickle: REDUCE on a %s", name_.c_str(), kind_name(c.k));
  if (a.k != K::tuple) fail("%s: bad pickle: REDUCE arguments are not a tuple", name_.c_str());
  const std::string g = c.s;
  std::vector<int32_t> av = a.items;
  if (g == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(av, true);
  if (g == "torch._utils._rebuild_tensor") return rebuild_tensor(av, false);
  if (g == "torch._utils._rebuild_parameter" ||
      g == "torch._utils._rebuild_parameter_with_state") {
    if (av.empty() || obj(av[0]).k != K::tensor)
      fail("%s: bad pickle: parameter rebuild without a tensor", name_.c_str());
    return av[0];
  }
  if (g == "collections.OrderedDict") return make(K::dict);
  if (g == "torch.device") {
    if (av.empty() || obj(av[0]).k != K::str)
      fail("%s: bad pickle: torch.device without a name", name_.c_str());
    return av[0];
  }
  if (g.rfind("__torch__.", 0) == 0) return make_str(g, K::object);
  fail("%s: bad pickle: the global '%s' cannot be called", name_.c_str(), g.c_str());
}

void Machine::build(int32_t target, int32_t state) {
  Obj& t = objs_[(size_t)target];
  if (t.k == K::object) {
    const Obj& s = obj(state);
    if (s.k == K::dict) {
      std::vector<int32_t> kv = s.items;  // copy: objs_ is not resized here, but be safe
      Obj& t2 = objs_[(size_t)target];
      t2.items.insert(t2.items.end(), kv.begin(), kv.end());
    }
    return;
  }
  if (t.k == K::dict || t.k == K::tensor) return;  // OrderedDict._metadata etc.: ignored
  fail("%s: bad pickle: BUILD on a %s", name_.c_str(), kind_name(t.k));
}

int32_t Machine::run() {
  for (;;) {
    need(1);
    uint8_t op = p_[pos_++];
    switch (op) {
      case 0x80: le(1); break;        // PROTO
      case 0x95: le(8); break;        // FRAME
      case '.': {                     // STOP
        if (stack_.size() != 1 || !marks_.empty()) error("STOP with a stack of the wrong size");
        return stack_.back();
      }
      case '(':
        if (marks_.size() >= lim_.max_stack) error("too many MARKs");
        marks_.push_back(stack_.size());
        break;
      case '0': pop(); break;
      case '1': pop_mark(); break;
      case '2': push(top()); break;
      case 'N': push(make(K::none)); break;
      case 0x88: push(make_int(1, K::boolean)); break;
      case 0x89: push(make_int(0, K::boolean)); break;
      case 'J': push(make_int((int32_t)(uint32_t)le(4))); break;
      case 'K': push(make_int((int64_t)le(1))); break;
      case 'M': push(make_int((int64_t)le(2))); break;
      case 'I':
      case 'L': {
        std::string s = line();
        if (!s.empty() && s.back() == 'L') s.pop_back();
        if (op == 'I' && (s == "00" || s == "01")) {
          push(make_int(s == "01", K::boolean));
          break;
        }
        char* end = nullptr;
        errno = 0;
        long long v = strtoll(s.c_str(), &end, 10);
        if (s.empty() || *end || errno) error("bad integer literal");
        push(make_int(v));
        break;
      }
      case 0x8a:
      case 0x8b: {  // LONG1, LONG4
        uint64_t k = op == 0x8a ? le(1) : le(4);
        if (k > 8) error("integer wider than 64 bits");
        uint64_t v = le((size_t)k);
        if (k > 0 && k < 8 && (v >> (8 * k - 1)) & 1) v |= ~uint64_t(0) << (8 * k);
        push(make_int((int64_t)v));
        break;
      }
      case 'F': {
        std::string s = line();
        char* end = nullptr;
        double v = strtod(s.c_str(), &end);
        if (s.empty() || *end) error("bad float literal");
        int32_t o = make(K::real);
        objs_[(size_t)o].f = v;
        push(o);
        break;
      }
      case 'G': {
        uint64_t b = 0;
        need(8);
        for (int j = 0; j < 8; j++) b = (b << 8) | p_[pos_ + (size_t)j];
        pos_ += 8;
        double v;
        std::memcpy(&v, &b, 8);
        int32_t o = make(K::real);
        objs_[(size_t)o].f = v;
        push(o);
        break;
      }
      case 'X': push(make_str(bytes(le(4)))); break;
      case 0x8c: push(make_str(bytes(le(1)))); break;
      case 0x8d: push(make_str(bytes(le(8)))); break;
      case 'T': push(make_str(bytes(le(4)), K::bytes)); break;
      case 'U': push(make_str(bytes(le(1)), K::bytes)); break;
      case 'B': push(make_str(bytes(le(4)), K::bytes)); break;
      case 'C': push(make_str(bytes(le(1)), K::bytes)); break;
      case 0x8e:
      case 0x96: push(make_str(bytes(le(8)), K::bytes)); break;
      case ')': push(make(K::tuple)); break;
      case 't':
      case 'l': {
        std::vector<int32_t> v = pop_mark();
        int32_t o = make(op == 't' ? K::tuple : K::list);
        objs_[(size_t)o].items = std::move(v);
        push(o);
        break;
      }
      case 0x85:
      case 0x86:
      case 0x87: {
        size_t k = (size_t)(op - 0x84);
        std::vector<int32_t> v(k);
        for (size_t j = k; j-- > 0;) v[j] = pop();
        int32_t o = make(K::tuple);
        objs_[(size_t)o].items = std::move(v);
        push(o);
        break;
      }
      case ']': push(make(K::list)); break;
      case '}': push(make(K::dict)); break;
      case 0x8f: push(make(K::set)); break;
      case 'a': {
        int32_t v = pop();
        Obj& l = objs_[(size_t)top()];
        if (l.k != K::list) error("APPEND to a non-list");
        l.items.push_back(v);
        break;
      }
      case 'e':
      case 0x90: {  // APPENDS, ADDITEMS
        std::vector<int32_t> v = pop_mark();
        Obj& l = objs_[(size_t)top()];
        if (l.k != (op == 'e' ? K::list : K::set)) error("APPENDS/ADDITEMS to the wrong type");
        l.items.insert(l.items.end(), v.begin(), v.end());
        break;
      }
      case 0x91: {  // FROZENSET
        std::vector<int32_t> v = pop_mark();
        int32_t o = make(K::set);
        objs_[(size_t)o].items = std::move(v);
        push(o);
        break;
      }
      case 'd': {
        std::vector<int32_t> v = pop_mark();
        if (v.size() % 2) error("DICT with an odd number of items");
        int32_t o = make(K::dict);
        objs_[(size_t)o].items = std::move(v);
        push(o);
        break;
      }
      case 's': {
        int32_t v = pop(), k = pop();
        dict_set(top(), k, v);
        break;
      }
      case 'u': {
        std::vector<int32_t> v = pop_mark();
        if (v.size() % 2) error("SETITEMS with an odd number of items");
        int32_t d = top();
        for (size_t j = 0; j < v.size(); j += 2) dict_set(d, v[j], v[j + 1]);
        break;
      }
      case 'g': {
        std::string s = line();
        char* end = nullptr;
        unsigned long long v = strtoull(s.c_str(), &end, 10);
        if (s.empty() || *end) error("bad GET index");
        push(memo_get(v));
        break;
      }
      case 'h': push(memo_get(le(1))); break;
      case 'j': push(memo_get(le(4))); break;
      case 'p': {
        std::string s = line();
        char* end = nullptr;
        unsigned long long v = strtoull(s.c_str(), &end, 10);
        if (s.empty() || *end) error("bad PUT index");
        memo_put(v, top());
        break;
      }
      case 'q': memo_put(le(1), top()); break;
      case 'r': memo_put(le(4), top()); break;
      case 0x94: memo_put(memo_.size(), top()); break;
      case 'c': {
        std::string module = line();
        std::string nm = line();
        push(global(module, nm));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        int32_t nm = pop(), module = pop();
        if (obj(nm).k != K::str || obj(module).k != K::str)
          error("STACK_GLOBAL needs two strings");
        std::string a = obj(module).s, b = obj(nm).s;
        push(global(a, b));
        break;
      }
      case 'R': {
        int32_t args = pop(), callable = pop();
        push(reduce(callable, args));
        break;
      }
      case 0x81: {  // NEWOBJ
        int32_t args = pop(), cls = pop();
        if (obj(args).k != K::tuple) error("NEWOBJ arguments are not a tuple");
        const Obj& c = obj(cls);
        if (c.k != K::global) error("NEWOBJ on a non-class");
        if (c.s == "collections.OrderedDict") {
          push(make(K::dict));
        } else if (c.s.rfind("__torch__.", 0) == 0) {
          std::string cs = c.s;
          push(make_str(cs, K::object));
        } else {
          fail("%s: bad pickle: cannot instantiate '%s'", name_.c_str(), c.s.c_str());
        }
        break;
      }
      case 0x92: {  // NEWOBJ_EX
        pop();  // kwargs
        int32_t args = pop(), cls = pop();
        (void)args;
        const Obj& c = obj(cls);
        if (c.k != K::global || c.s.rfind("__torch__.", 0) != 0)
          error("NEWOBJ_EX on a class that is not a __torch__ module");
        std::string cs = c.s;
        push(make_str(cs, K::object));
        break;
      }
      case 'b': {
        int32_t state = pop();
        build(top(), state);
        break;
      }
      case 'Q': {
        int32_t pid = pop();
        push(persistent_load(pid));
        break;
      }
      default: {
        char buf[96];
        snprintf(buf, sizeof buf, "unsupported opcode 0x%02x", op);
        pos_--;
        error(buf);
      }
    }
  }
}

void Machine::walk(int32_t o, const std::string& prefix, int depth,
                   std::vector<std::pair<std::string, int32_t>>& out) {
  if (++visits_ > objs_.size() * 4 + 1024)
    fail("%s: pickle structure too large (shared references visited too often)",
         name_.c_str());
  const Obj& x = obj(o);
  if (x.k == K::tensor) {
    out.emplace_back(prefix, o);
    return;
  }
  if (x.k != K::dict && x.k != K::object) return;
  if (depth >= lim_.max_depth)
    fail("%s: pickle nested deeper than %d levels", name_.c_str(), lim_.max_depth);
  std::vector<int32_t> items = x.items;  // walk may not grow objs_, but keep it simple
  for (size_t j = 0; j + 1 < items.size(); j += 2) {
    const Obj& key = obj(items[j]);
    std::string k;
    if (key.k == K::str) k = key.s;
    else if (key.k == K::integer) k = std::to_string(key.i);
    else continue;
    walk(items[j + 1], prefix.empty() ? k : prefix + "." + k, depth + 1, out);
  }
}

void Machine::collect(int32_t root, std::vector<std::pair<std::string, int32_t>>& out) {
  // Checkpoints wrap the state dict: {"state_dict": {...}, "epoch": ...} (open_clip),
  // {"model": {...}}. Unwrap when the root holds no tensor itself.
  const Obj& r = obj(root);
  if (r.k == K::dict) {
    bool direct = false;
    int32_t inner = -1;
    for (size_t j = 0; j + 1 < r.items.size(); j += 2) {
      const Obj& key = obj(r.items[j]);
      const Obj& v = obj(r.items[j + 1]);
      if (v.k == K::tensor) direct = true;
      if (key.k == K::str && (key.s == "state_dict" || key.s == "model") &&
          (v.k == K::dict || v.k == K::object) && inner < 0)
        inner = r.items[j + 1];
    }
    if (!direct && inner >= 0) root = inner;
  }
  walk(root, "", 0, out);
}

std::string root_prefix(const ZipReader& zip) {
  std::string found;
  int count = 0;
  for (const std::string& n : zip.names()) {
    size_t slash = n.find('/');
    bool top = n == "data.pkl" || (slash != std::string::npos && n.substr(slash + 1) == "data.pkl");
    if (top) {
      found = n.substr(0, n.size() - 8);
      count++;
    }
  }
  CLIP_CHECK(count == 1, "%s: not a torch checkpoint zip (%s data.pkl)", zip.name().c_str(),
             count == 0 ? "no" : "more than one");
  return found;
}

bool contiguous(const std::vector<int64_t>& shape, const std::vector<int64_t>& stride) {
  int64_t s = 1;
  for (size_t j = shape.size(); j-- > 0;) {
    if (shape[j] != 1 && stride[j] != s) return false;
    s *= shape[j];
  }
  return true;
}

}  // namespace

RawSet read_torch_zip(const ZipReader& zip, const PickleLimits& lim) {
  const std::string& file = zip.name();
  std::string root = root_prefix(zip);
  RawSet set;
  bool script = zip.has(root + "constants.pkl");
  for (const std::string& n : zip.names())
    if (n.rfind(root + "code/", 0) == 0) script = true;
  set.format = script ? "openai-torchscript" : "state-dict";

  std::string pkl = zip.read_string(root + "data.pkl");
  Machine m((const uint8_t*)pkl.data(), pkl.size(), file + " (data.pkl)", lim);
  int32_t top = m.run();
  std::vector<std::pair<std::string, int32_t>> found;
  m.collect(top, found);

  struct Stor {
    RawType type;
    int64_t numel;
    const uint8_t* data;
  };
  std::map<std::string, Stor> storages;
  for (auto& [name, ti] : found) {
    const Obj& t = m.obj(ti);
    const Obj& s = m.obj(t.storage);
    std::string what = file + ": tensor '" + name + "'";
    auto it = storages.find(s.s);
    if (it == storages.end()) {
      size_t es = raw_size(s.type);
      int64_t nbytes = checked_nbytes({s.i}, es, what + " storage");
      std::string member = root + "data/" + s.s;
      CLIP_CHECK(zip.has(member), "%s: storage '%s' of tensor '%s' is missing (no zip member %s)",
                 file.c_str(), s.s.c_str(), name.c_str(), member.c_str());
      uint64_t have = zip.member_size(member);
      CLIP_CHECK(have == (uint64_t)nbytes,
                 "%s: storage '%s' of tensor '%s' has %llu bytes, expected %lld (%lld x %s)",
                 file.c_str(), s.s.c_str(), name.c_str(), (unsigned long long)have,
                 (long long)nbytes, (long long)s.i, raw_name(s.type));
      uint8_t* buf = set.holder->alloc((size_t)nbytes);
      if (nbytes) zip.read(member, buf, (uint64_t)nbytes);
      it = storages.emplace(s.s, Stor{s.type, s.i, buf}).first;
    }
    const Stor& st = it->second;
    CLIP_CHECK(st.type == t.type, "%s: storage '%s' is read as both %s and %s", file.c_str(),
               s.s.c_str(), raw_name(st.type), raw_name(t.type));
    size_t es = raw_size(t.type);
    int64_t numel = checked_nbytes(t.shape, es, what) / (int64_t)es;
    RawTensor rt;
    rt.name = name;
    rt.type = t.type;
    rt.shape = t.shape;
    rt.nbytes = (size_t)numel * es;
    if (numel == 0) {
      rt.data = st.data;
      set.tensors.push_back(std::move(rt));
      continue;
    }
    // last element index = offset + sum (size-1)*stride, checked against the storage
    int64_t last = t.i;
    for (size_t j = 0; j < t.shape.size(); j++) {
      int64_t step;
      if (__builtin_mul_overflow(t.shape[j] - 1, t.stride[j], &step) ||
          __builtin_add_overflow(last, step, &last))
        fail("%s: strides overflow", what.c_str());
    }
    CLIP_CHECK(last < st.numel,
               "%s: view (offset %lld, shape %s) reaches element %lld of a storage of %lld",
               what.c_str(), (long long)t.i, shape_str(t.shape).c_str(), (long long)last,
               (long long)st.numel);
    if (contiguous(t.shape, t.stride)) {
      rt.data = st.data + (size_t)t.i * es;
    } else {  // a strided view: gather into a contiguous copy
      uint8_t* dst = set.holder->alloc(rt.nbytes);
      size_t nd = t.shape.size();
      std::vector<int64_t> idx(nd, 0);
      for (int64_t e = 0; e < numel; e++) {
        int64_t src = t.i;
        for (size_t j = 0; j < nd; j++) src += idx[j] * t.stride[j];
        std::memcpy(dst + (size_t)e * es, st.data + (size_t)src * es, es);
        for (size_t j = nd; j-- > 0;) {
          if (++idx[j] < t.shape[j]) break;
          idx[j] = 0;
        }
      }
      rt.data = dst;
    }
    set.tensors.push_back(std::move(rt));
  }
  return set;
}

RawSet parse_torch_zip_buffer(const void* data, size_t size, const std::string& name) {
  ZipReader zip(data, size, name);
  return read_torch_zip(zip);
}

std::vector<std::string> parse_pickle_names(const void* data, size_t size,
                                            const std::string& name, const PickleLimits& lim) {
  Machine m((const uint8_t*)data, size, name, lim);
  int32_t top = m.run();
  std::vector<std::pair<std::string, int32_t>> found;
  m.collect(top, found);
  std::vector<std::string> names;
  for (auto& f : found) names.push_back(f.first);
  return names;
}

}  // namespace clip::weights_detail
