#include "agent_conn.h"

#include "vandra/testbed/testbed.h"

namespace vandra::cli {

void addConn(CLI::App* sub, AgentConn& c) {
  sub->add_option("--agent", c.agent, "Agent address host:port");
  sub->add_option("--ca", c.ca, "Site CA certificate");
  sub->add_option("--cert", c.cert, "Client certificate issued by the site CA");
  sub->add_option("--key", c.key, "Client key");
  sub->add_option("--netns", c.netns, "Connect from inside this network namespace");
  sub->add_option(
      "--site", c.site,
      "Testbed site (dc, cloud-eu, cloud-us): agent, certificates and namespace from the testbed");
  sub->add_option("--testbed", c.testbed, "Testbed state folder (with --site)")
      ->default_str("/run/vandra/testbed");
  sub->add_flag("--json", c.json, "Print the agent's JSON");
}

Result<void> resolveConn(AgentConn& c) {
  if (!c.site.empty()) {
    const std::string dir = c.testbed.empty() ? "/run/vandra/testbed" : c.testbed;
    VANDRA_TRY_ASSIGN(const auto st, testbed::status(dir));
    if (!st.present || !st.info) {
      return fail(ErrorCode::NotFound, "No testbed recorded in " + dir + " (vandra testbed up)");
    }
    const testbed::SiteInfo* s = st.info->site(c.site);
    if (s == nullptr) {
      std::string names;
      for (const auto& known : st.info->sites) {
        names += (names.empty() ? "" : ", ") + known.name;
      }
      return fail(ErrorCode::InvalidArgument,
                  "Unknown site '" + c.site + "' (the testbed has " + names + ")");
    }
    if (s->agent_endpoint.empty()) {
      return fail(ErrorCode::NotFound, "The testbed in " + dir + " runs no agent at " + c.site +
                                           " (it was started with --no-agents)");
    }
    c.agent = s->agent_endpoint;
    c.ca = s->ca_cert;
    c.cert = s->operator_cert;
    c.key = s->operator_key;
    c.netns = s->netns;
  }
  if (c.ca.empty() || c.cert.empty() || c.key.empty()) {
    return fail(ErrorCode::InvalidArgument,
                "Give --ca, --cert and --key (or --site for a testbed)");
  }
  return {};
}

Result<agent::AgentClient> clientFor(AgentConn& c) {
  VANDRA_TRY(resolveConn(c));
  agent::AgentEndpoint ep{
      .host = "", .port = 0, .ca = c.ca, .cert = c.cert, .key = c.key, .netns = c.netns};
  if (auto r = agent::parseHostPort(c.agent, ep); !r) {
    return fail(Error(r.error().code, "--agent: " + r.error().describe()));
  }
  return agent::AgentClient(ep);
}

}  // namespace vandra::cli
