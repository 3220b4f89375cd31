// PLACEHOLDER until the GGUF reader lands.
#include "gguf/gguf.h"
namespace inferlab {
std::shared_ptr<GGUFFile> GGUFFile::open(const std::string&) { throw NotSupportedError("not implemented yet"); }
}
