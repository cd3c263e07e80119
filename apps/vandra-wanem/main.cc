// vandra-wanem: the user-space WAN emulator as its own process (the testbed starts one per
// testbed and stops it by pid). Creates two TUN devices and shapes traffic between them;
// see src/testbed/wan_emulator.cc for the packet path. Exit 0 on SIGTERM or when a device
// disappears, 1 on error, 2 on bad usage. A one-line summary goes to stderr on exit.
#include <CLI/CLI.hpp>
#include <cmath>
#include <iostream>

#include "vandra/testbed/wan_emulator.h"

namespace {

void printStats(const char* dir, const vandra::testbed::LinkStats& s) {
  std::cerr << dir << ": submitted " << s.submitted << ", lost " << s.dropped_loss
            << ", queue drops " << s.dropped_queue << ", delivered " << s.delivered << " ("
            << s.delivered_bytes << " bytes), max queue " << s.max_queue_packets << " packets\n";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace vandra::testbed;
  CLI::App app{"vandra-wanem: user-space WAN emulator between two TUN devices"};
  std::string dev_a;
  std::string dev_b;
  std::string profile_name = "wan";
  std::optional<double> rate_mbit;
  std::optional<double> delay_ms;
  std::optional<double> loss_pct;
  std::optional<size_t> queue_packets;
  std::optional<size_t> queue_bytes;
  uint64_t seed = 1;
  int ready_fd = -1;
  int nice = -10;
  std::string tag;
  app.add_option("--a", dev_a, "TUN device name of side a")->required();
  app.add_option("--b", dev_b, "TUN device name of side b")->required();
  app.add_option("--profile", profile_name, "Link profile giving the defaults");
  app.add_option("--rate-mbit", rate_mbit, "Rate in Mbit/s each way (0: unlimited)");
  app.add_option("--delay-ms", delay_ms, "One-way delay in ms");
  app.add_option("--loss-pct", loss_pct, "Loss in percent each way");
  app.add_option("--queue-packets", queue_packets, "Queue limit in packets");
  app.add_option("--queue-bytes", queue_bytes, "Queue limit in bytes");
  app.add_option("--seed", seed, "Seed of the loss draw");
  app.add_option("--ready-fd", ready_fd, "Write 'ready' to this fd once the devices exist");
  app.add_option("--nice", nice, "Scheduling priority to ask for (best effort)");
  app.add_option("--tag", tag, "Free text naming the owner (shown in the command line)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  auto profile = findProfile(profile_name);
  if (!profile) {
    std::cerr << "vandra-wanem: " << profile.error().describe() << "\n";
    return 2;
  }
  LinkParams link = profile->link;
  if (rate_mbit) {
    link.rate_bps = static_cast<uint64_t>(std::llround(*rate_mbit * 1e6));
  }
  if (delay_ms) {
    link.delay = std::chrono::nanoseconds(std::llround(*delay_ms * 1e6));
  }
  if (loss_pct) {
    link.loss = *loss_pct / 100.0;
  }
  if (queue_packets) {
    link.queue_packets = *queue_packets;
  }
  if (queue_bytes) {
    link.queue_bytes = *queue_bytes;
  }
  if (auto ok = validate(link); !ok) {
    std::cerr << "vandra-wanem: " << ok.error().describe() << "\n";
    return 2;
  }
  WanEmulatorOptions opts;
  opts.a.device = dev_a;
  opts.b.device = dev_b;
  opts.a_to_b = link;
  opts.b_to_a = link;
  opts.seed = seed;
  opts.ready_fd = ready_fd;
  opts.nice = nice;
  auto r = runWanEmulator(opts);
  if (!r) {
    std::cerr << "vandra-wanem: " << r.error().describe() << "\n";
    return 1;
  }
  std::cerr << "vandra-wanem: stopped: " << r->reason << "\n";
  printStats("a->b", r->a_to_b);
  printStats("b->a", r->b_to_a);
  return 0;
}
