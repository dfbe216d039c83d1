// Run as another user against a segment: every way in must be refused. Prints one line per
// attempt; the exit code is the number of attempts that got through.
//   shm_attacker /ipcx-<uid>-NAME NAME
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include <ipcx/segment.hpp>

namespace {
int breaches = 0;

void report(const char* what, bool ok, int err) {
  if (ok) {
    ++breaches;
    std::printf("%s: SUCCEEDED\n", what);
  } else {
    std::printf("%s: refused (%s)\n", what, std::strerror(err));
  }
}

void try_open(const char* what, const std::string& sys, int flags, int prot) {
  int fd = ::shm_open(sys.c_str(), flags, 0);
  report(what, fd >= 0, errno);
  if (fd < 0) return;
  void* p = ::mmap(nullptr, 4096, prot, MAP_SHARED, fd, 0);
  report("mmap", p != MAP_FAILED, errno);
  ::close(fd);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return 100;
  std::string sys = argv[1];
  try_open("shm_open O_RDWR", sys, O_RDWR, PROT_READ | PROT_WRITE);
  try_open("shm_open O_RDONLY", sys, O_RDONLY, PROT_READ);
  int fd = ::open(("/dev/shm" + sys).c_str(), O_RDONLY);
  report("open /dev/shm path", fd >= 0, errno);
  if (fd >= 0) ::close(fd);
  report("shm_unlink", ::shm_unlink(sys.c_str()) == 0, errno);
  auto seg = ipcx::shm::Segment::open(argv[2], std::chrono::milliseconds(100));
  report("Segment::open", seg.has_value(), 0);
  auto rm = ipcx::shm::Segment::remove(argv[2]);
  report("Segment::remove", rm.has_value(), 0);
  std::fflush(stdout);
  return breaches;
}
