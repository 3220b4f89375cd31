// Tokenizer bindings: inferlab._core.tokenizer. The Pythonic wrapper is python/inferlab/tokenizer.py.
#include <pybind11/stl.h>

#include "bindings/bindings.h"
#include "core/error.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace inferlab {
namespace {

// UTF-8 of a Python str. Lone surrogates (which UTF-8 cannot hold) become U+FFFD, always.
std::string text_utf8(const py::handle& h) {
  if (!PyUnicode_Check(h.ptr()))
    throw py::type_error(str_cat("text must be a str, got ", std::string(py::str(py::type::of(h).attr("__name__")))));
  Py_ssize_t n = 0;
  const char* p = PyUnicode_AsUTF8AndSize(h.ptr(), &n);
  if (p != nullptr) return std::string(p, size_t(n));
  PyErr_Clear();
  PyObject* o = h.ptr();
  const Py_ssize_t len = PyUnicode_GET_LENGTH(o);
  const int kind = PyUnicode_KIND(o);
  const void* data = PyUnicode_DATA(o);
  std::string out;
  out.reserve(size_t(len) * 2);
  for (Py_ssize_t i = 0; i < len; ++i) {
    uint32_t cp = PyUnicode_READ(kind, data, i);
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
    utf8_append(out, cp);
  }
  return out;
}

py::str to_str(const std::string& valid_utf8) {
  PyObject* o = PyUnicode_DecodeUTF8(valid_utf8.data(), Py_ssize_t(valid_utf8.size()), "replace");
  if (o == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(o);
}

py::bytes to_bytes(const std::string& s) { return py::bytes(s.data(), s.size()); }

py::list to_list(const std::vector<int32_t>& ids) {
  PyObject* l = PyList_New(Py_ssize_t(ids.size()));
  if (l == nullptr) throw py::error_already_set();
  for (size_t i = 0; i < ids.size(); ++i) PyList_SET_ITEM(l, Py_ssize_t(i), PyLong_FromLong(ids[i]));
  return py::reinterpret_steal<py::list>(l);
}

std::vector<int32_t> to_ids(const py::handle& seq, const char* arg) {
  std::vector<int32_t> ids;
  py::sequence s = py::reinterpret_borrow<py::sequence>(seq);
  ids.reserve(s.size());
  size_t i = 0;
  for (auto item : s) {
    long long v;
    try {
      v = py::cast<long long>(item);
    } catch (const py::cast_error&) {
      throw ValueError(str_cat(arg, "[", i, "] is not an integer"));
    }
    if (v < 0 || v > 0x7fffffff) throw ValueError(str_cat(arg, "[", i, "] = ", v, " is not a token id"));
    ids.push_back(int32_t(v));
    ++i;
  }
  return ids;
}

std::vector<int32_t> ids_arg(const py::object& ids, const char* arg) {
  if (PyUnicode_Check(ids.ptr()) || PyBytes_Check(ids.ptr()) || !PySequence_Check(ids.ptr())) {
    if (py::hasattr(ids, "tolist")) return to_ids(ids.attr("tolist")(), arg);  // numpy arrays
    throw py::type_error(str_cat(arg, " must be a sequence of token ids"));
  }
  return to_ids(ids, arg);
}

}  // namespace

void bind_tokenizer(py::module_& m) {
  py::module_ t = m.def_submodule("tokenizer", "byte-level BPE and SentencePiece BPE tokenizers");

  py::class_<AddedToken>(t, "AddedToken")
      .def(py::init<>())
      .def_readwrite("id", &AddedToken::id)
      .def_readwrite("content", &AddedToken::content)
      .def_readwrite("special", &AddedToken::special)
      .def_readwrite("lstrip", &AddedToken::lstrip)
      .def_readwrite("rstrip", &AddedToken::rstrip)
      .def_readwrite("single_word", &AddedToken::single_word)
      .def_readwrite("normalized", &AddedToken::normalized);

  // Enums travel as ints (see tokenizer.h): algo 0 merges / 1 spm-scores; pretok 0 none, 1 gpt2,
  // 2 llama3, 3 qwen2, 4 starcoder, 5 metaspace-split; space_prefix 0 none, 1 always,
  // 2 metaspace-always, 3 metaspace-first.
  py::class_<TokenizerSpec>(t, "TokenizerSpec")
      .def(py::init<>())
      .def_readwrite("tokens", &TokenizerSpec::tokens)
      .def_readwrite("scores", &TokenizerSpec::scores)
      .def_readwrite("token_types", &TokenizerSpec::token_types)
      .def_readwrite("merges", &TokenizerSpec::merges)
      .def_property("algo", [](const TokenizerSpec& s) { return int(s.algo); },
                    [](TokenizerSpec& s, int v) {
                      IL_CHECK_ARG(v == 0 || v == 1, "algo must be 0 (merges) or 1 (spm scores), got ", v);
                      s.algo = BpeAlgo(v);
                    })
      .def_property("pretok", [](const TokenizerSpec& s) { return int(s.pretok); },
                    [](TokenizerSpec& s, int v) {
                      IL_CHECK_ARG(v >= 0 && v <= 5, "pretok must be 0..5, got ", v);
                      s.pretok = PreTokKind(v);
                    })
      .def_property("space_prefix", [](const TokenizerSpec& s) { return int(s.space_prefix); },
                    [](TokenizerSpec& s, int v) {
                      IL_CHECK_ARG(v >= 0 && v <= 3, "space_prefix must be 0..3, got ", v);
                      s.space_prefix = SpacePrefix(v);
                    })
      .def_readwrite("byte_level", &TokenizerSpec::byte_level)
      .def_readwrite("byte_fallback", &TokenizerSpec::byte_fallback)
      .def_readwrite("ignore_merges", &TokenizerSpec::ignore_merges)
      .def_readwrite("fuse_unk", &TokenizerSpec::fuse_unk)
      .def_readwrite("nfc", &TokenizerSpec::nfc)
      .def_readwrite("escape_spaces", &TokenizerSpec::escape_spaces)
      .def_readwrite("bytelevel_prefix_space", &TokenizerSpec::bytelevel_prefix_space)
      .def_readwrite("decode_strip_space", &TokenizerSpec::decode_strip_space)
      .def_readwrite("added", &TokenizerSpec::added)
      .def_readwrite("bos_id", &TokenizerSpec::bos_id)
      .def_readwrite("eos_id", &TokenizerSpec::eos_id)
      .def_readwrite("unk_id", &TokenizerSpec::unk_id)
      .def_readwrite("pad_id", &TokenizerSpec::pad_id)
      .def_readwrite("prefix_ids", &TokenizerSpec::prefix_ids)
      .def_readwrite("suffix_ids", &TokenizerSpec::suffix_ids)
      .def_readwrite("eog_ids", &TokenizerSpec::eog_ids)
      .def_readwrite("add_bos", &TokenizerSpec::add_bos)
      .def_readwrite("add_eos", &TokenizerSpec::add_eos)
      .def_readwrite("chat_template", &TokenizerSpec::chat_template)
      .def_readwrite("name", &TokenizerSpec::name);

  t.def("pretok_from_regex", [](const std::string& pattern) -> py::object {
    PreTokKind k;
    if (pretok_from_hf_regex(pattern, &k)) return py::int_(int(k));
    return py::none();
  }, "Pre-tokenizer kind for a HF Split regex, or None when it has no hand-written matcher.");
  t.def("find_eog_ids", &find_eog_ids, py::arg("tokens"), py::arg("extra"));
  t.def("nfc", [](py::handle s) {
    std::string in = text_utf8(s), out;
    return to_str(nfc_normalize(in, out) ? out : in);
  }, "NFC as the tokenizers apply it (Unicode 9.0 data, as HF tokenizers).");
  t.def("categories", [](py::handle s) {
    std::string in = text_utf8(s);
    std::vector<int32_t> out;
    const auto* p = reinterpret_cast<const unsigned char*>(in.data());
    for (size_t i = 0; i < in.size();) {
      uint32_t cp;
      i += utf8_decode(p, in.size(), i, &cp);
      out.push_back(ucp_flags(cp));
    }
    return to_list(out);
  }, "Flags byte of each code point: bits 0-4 general category (UCat order), bit 5 White_Space, bit 6 NFC-unsafe.");
  t.def("pretokenize", [](int kind, py::handle s) {
    IL_CHECK_ARG(kind >= 0 && kind <= 5, "kind must be 0..5, got ", kind);
    std::string in = text_utf8(s);
    PreTokScratch scratch;
    std::vector<Span> spans;
    pretokenize(PreTokKind(kind), in, scratch, spans);
    py::list out;
    for (auto& sp : spans) out.append(to_str(in.substr(sp.first, sp.second - sp.first)));
    return out;
  }, py::arg("kind"), py::arg("text"), "Words of `text` under a pre-tokenizer (for tests).");

  py::class_<StreamDecoder>(t, "StreamDecoder")
      .def("push", [](StreamDecoder& d, long long id) {
        IL_CHECK_ARG(id >= 0 && id <= 0x7fffffff, "id = ", id, " is not a token id");
        return to_str(d.push(int32_t(id)));
      }, py::arg("id"))
      .def("flush", [](StreamDecoder& d) { return to_str(d.flush()); });

  py::class_<Tokenizer, std::shared_ptr<Tokenizer>>(t, "Tokenizer")
      .def(py::init([](TokenizerSpec spec) { return std::make_shared<Tokenizer>(std::move(spec)); }), py::arg("spec"))
      .def_static("spec_from_gguf", [](const std::string& path) {
        auto f = GGUFFile::open(path);
        return spec_from_gguf(*f);
      }, py::arg("path"))
      .def_static("from_gguf", [](const std::string& path) {
        TokenizerSpec spec;
        {
          py::gil_scoped_release nogil;
          auto f = GGUFFile::open(path);
          spec = spec_from_gguf(*f);
        }
        return std::make_shared<Tokenizer>(std::move(spec));
      }, py::arg("path"))
      .def("encode", [](const Tokenizer& tok, py::handle text, bool add_special, bool parse_special) {
        std::string s = text_utf8(text);
        std::vector<int32_t> ids;
        {
          py::gil_scoped_release nogil;
          ids = tok.encode(s, add_special, parse_special);
        }
        return to_list(ids);
      }, py::arg("text"), py::arg("add_special") = false, py::arg("parse_special") = false)
      .def("decode", [](const Tokenizer& tok, py::object ids, bool skip_special) {
        std::vector<int32_t> v = ids_arg(ids, "ids");
        return to_str(utf8_sanitize(tok.decode_bytes(v, skip_special)));
      }, py::arg("ids"), py::arg("skip_special") = false)
      .def("decode_bytes", [](const Tokenizer& tok, py::object ids, bool skip_special) {
        return to_bytes(tok.decode_bytes(ids_arg(ids, "ids"), skip_special));
      }, py::arg("ids"), py::arg("skip_special") = false)
      .def("stream_decoder", [](std::shared_ptr<Tokenizer> self, bool skip_special) {
        return StreamDecoder(self, skip_special);
      }, py::arg("skip_special") = false)
      .def_property_readonly("vocab_size", &Tokenizer::vocab_size)
      .def_property_readonly("spec", &Tokenizer::spec, py::return_value_policy::copy)
      .def("id_to_piece", [](const Tokenizer& tok, long long id) {
        IL_CHECK_ARG(id >= 0 && id < (long long)tok.vocab_size(), "id = ", id, " is outside the vocabulary (size ",
                     tok.vocab_size(), ")");
        return to_str(tok.id_to_piece(int32_t(id)));
      }, py::arg("id"))
      .def("piece_to_id", [](const Tokenizer& tok, py::handle piece) -> py::object {
        int32_t id = tok.piece_to_id(text_utf8(piece));
        if (id < 0) return py::none();
        return py::int_(id);
      }, py::arg("piece"))
      .def("token_type", [](const Tokenizer& tok, long long id) {
        IL_CHECK_ARG(id >= 0 && id < (long long)tok.vocab_size(), "id = ", id, " is outside the vocabulary");
        return tok.token_type(int32_t(id));
      }, py::arg("id"))
      .def("is_special", [](const Tokenizer& tok, long long id) {
        IL_CHECK_ARG(id >= 0 && id < (long long)tok.vocab_size(), "id = ", id, " is outside the vocabulary");
        return tok.is_special(int32_t(id));
      }, py::arg("id"));
}

}  // namespace inferlab
