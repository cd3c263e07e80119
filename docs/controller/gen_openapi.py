# Generates docs/controller/openapi.json (the API contract, served at /v1/openapi.json and checked
# against real answers by test/controller): python3 docs/controller/gen_openapi.py > docs/controller/openapi.json
import json
S = lambda name: {"$ref": "#/components/schemas/" + name}
def obj(props, required=None, extra=False):
    o = {"type": "object", "properties": props, "required": required if required is not None else list(props.keys())}
    if not extra:
        o["additionalProperties"] = False
    return o
num = {"type": "number"}; integer = {"type": "integer"}; string = {"type": "string"}; boolean = {"type": "boolean"}
arr = lambda x: {"type": "array", "items": x}
nullable = lambda t: {"type": [t["type"], "null"]} if "type" in t else {"oneOf": [t, {"type": "null"}]}
name = {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$"}

schemas = {
 "Error": obj({"error": obj({"code": string, "message": string})}),
 "Price": obj({"currency": {"type": "string", "minLength": 3, "maxLength": 3}, "vcpu_hour": num, "memory_gib_hour": num}, []),
 "WaterMarks": obj({"high": num, "low": num}, []),
 "Site": obj({"name": name, "jurisdictions": arr(string), "vcpu_overcommit": num, "price": S("Price"),
              "water_marks": S("WaterMarks"), "networks": arr(string), "default_network": string}),
 "SiteDetail": {"allOf": [S("Site")]},  # plus hosts
 "Resources": obj({"vcpus": integer, "memory_mib": integer, "disk_gib": integer}),
 "Host": obj({"name": name, "site": name, "endpoint": string, "capacity": S("Resources"), "used": S("Resources"),
              "reachable": boolean, "last_seen_ms": integer, "last_error": string}),
 "Link": obj({"a": name, "b": name, "rtt_ms": num, "mbps": num, "measured_at_ms": integer,
              "rtt_source": {"type": "string", "enum": ["configured", "measured"]},
              "mbps_source": {"type": "string", "enum": ["configured", "measured"]},
              "mbps_method": {"type": "string", "enum": ["", "migration", "probe"]},
              "configured_rtt_ms": num, "configured_mbps": num,
              "rtt_measured_at_ms": integer, "mbps_measured_at_ms": integer}),
 "Location": obj({"name": name, "rtt_ms": {"type": "object", "additionalProperties": num}}),
 "NetworkMapping": obj({"name": name, "members": {"type": "object", "additionalProperties": string}}),
 "Sla": {"type": "object", "description": "The SLA section's JSON (docs/ovf/sla-section.md)"},
 "Vm": obj({"name": name, "site": string, "host": string, "home_site": string,
            "state": {"type": "string", "enum": ["defined", "running", "stopped", "migrating", "missing", "failed"]},
            "vcpus": integer, "memory_mib": integer, "disk_gib": integer, "sla": S("Sla"),
            "networks": arr(string), "placed_at_ms": integer, "last_moved_at_ms": integer,
            "dirty_rate_mbps": {"type": ["number", "null"]}}),
 "Migration": obj({"id": integer, "vm": name, "from": string, "to": string, "agent_migration_id": string,
                   "state": {"type": "string", "enum": ["running", "done", "failed", "cancelled"]},
                   "reason": {"type": "string", "enum": ["operator", "wander", "come_home", "drain", "sla"]},
                   "why": string, "requested_by": string, "epoch": integer, "started_at_ms": integer,
                   "finished_at_ms": integer, "downtime_ms": {"type": ["number", "null"]},
                   "budget_ms": {"type": ["integer", "null"]}, "within_budget": {"type": ["boolean", "null"]},
                   "error": string,
                   "networks": {"type": "object", "additionalProperties": string,
                                "description": "the NICs' networks renamed for the target (its names)"}}),
 "MigrationDetail": {"allOf": [S("Migration")]},
 "Refusal": obj({"code": string, "clause": string}),
 "Preflight": obj({"vm": name, "to": name, "ok": boolean, "refusals": arr(S("Refusal")), "estimate": S("Estimate")}),
 "SlaVerdict": obj({"vm": name, "site": string, "ok": boolean, "violations": arr(string),
                    "link_violations": arr(string)}),
 "SlaStatus": obj({"vms": arr(S("SlaVerdict")), "violations": integer}),
 "Leader": obj({"leader": boolean, "epoch": integer, "holder": string, "controller": string}),
 "Health": obj({"status": {"type": "string", "enum": ["ok"]}, "leader": S("Leader")}),
 "AuditEntry": obj({"seq": integer, "at_ms": integer, "who": string, "role": string, "action": string,
                    "target": string, "status": integer, "result": string, "reason": string}),
 "Event": obj({"seq": integer, "at_ms": integer, "kind": string, "subject": string, "message": string}),
 "Placement": {"type": "object", "required": ["placements", "unplaced", "moves", "cost_per_hour"],
               "properties": {"placements": arr(obj({"vm": string, "site": string, "host": string})),
                              "unplaced": arr(obj({"vm": string, "reasons": arr(obj({"site": string, "clause": string}))})),
                              "moves": arr({"type": "object", "required": ["vm", "from", "to"]}),
                              "cost_per_hour": num}},
 "MobilityPlan": {"type": "object", "required": ["moves", "held", "sites"], "properties": {
    "moves": arr(obj({"vm": string, "from": string, "from_host": string, "to": string, "to_host": string,
                      "reason": {"type": "string", "enum": ["over-high-water", "coming-home", "drain"]}, "why": string,
                      "cost_per_hour_before": num, "cost_per_hour_after": num})),
    "held": arr(obj({"vm": string, "site": string, "wanted": string, "reason": string, "why": string,
                     "reasons": arr(obj({"site": string, "clause": string}))})),
    "sites": arr({"type": "object", "required": ["site", "before", "after"]})}},
 "Mobility": obj({"paused": boolean, "plan": S("MobilityPlan")}),
 "Drain": obj({"site": name, "started": boolean, "plan": S("MobilityPlan")}),
 "Paused": obj({"paused": boolean}),
 "NewVmPlacement": obj({"site": name, "host": name, "cost_per_hour": num, "networks": {"type": "object", "additionalProperties": string}}),
 "VmAction": obj({"vm": name, "action": {"type": "string", "enum": ["start", "stop"]}}),
 "Upload": obj({"name": string, "size": integer, "sha256": {"type": ["string", "null"]}}),
 "UploadList": obj({"packages": arr(S("Upload")), "max_upload_bytes": integer, "available_bytes": integer}, ["packages", "max_upload_bytes"]),
 "PackageVm": obj({"vs": string, "name": string, "vcpus": integer, "memory_mib": integer, "disk_gib": integer,
                   "networks": arr(string), "sla": {"type": ["object", "null"]}}),
 "PackageDetail": obj({"name": string, "size": integer, "sha256": {"type": ["string", "null"]},
                       "signature": {"type": "string", "description": "unsigned, trusted, untrusted, invalid, ..."},
                       "vms": arr(S("PackageVm")),
                       "placement": {"oneOf": [S("NewVmPlacement"), S("Error")], "description": "where the VM would go now (or why nowhere)"}}),
 "ImportedVm": obj({"vm": S("Vm"), "placement": S("NewVmPlacement")}),
 "Deleted": obj({"deleted": string}),
 "Session": obj({"user": string, "role": {"type": "string", "enum": ["operator", "viewer"]}, "csrf": string, "expires_at_ms": integer}),
 "Estimate": {"type": ["object", "null"], "additionalProperties": False, "required": ["duration_s", "interruption_ms", "rtt_ms", "mbps", "basis"],
              "properties": {"duration_s": num, "interruption_ms": num, "rtt_ms": num, "mbps": num, "basis": string}},
 "Samples": obj({"samples": arr(obj({"t_s": num, "phase": string, "mbps": num, "dirty_rate_bps": integer, "wan_bytes": integer}))}),
}
# SiteDetail = Site + hosts: write it out fully (additionalProperties false on Site would reject hosts)
sd = json.loads(json.dumps(schemas["Site"])); sd["properties"]["hosts"] = arr(S("Host")); sd["required"].append("hosts")
schemas["SiteDetail"] = sd
md = json.loads(json.dumps(schemas["Migration"])); md["properties"]["report"] = {"type": ["object", "null"]}; md["required"].append("report")
md["properties"]["live"] = {"type": ["object", "null"], "description": "while running: the source agent's phase and progress", "properties": {"phase": string, "progress": {"type": ["object", "null"]}}}; md["required"].append("live")
schemas["MigrationDetail"] = md

def listOf(key, item):
    return obj({key: arr(S(item))})
for k, item in [("Sites", "Site"), ("Hosts", "Host"), ("Links", "Link"), ("Locations", "Location"),
                ("Networks", "NetworkMapping"), ("Vms", "Vm"), ("Migrations", "Migration"), ("Audit", "AuditEntry"), ("Events", "Event")]:
    key = {"Sites": "sites", "Hosts": "hosts", "Links": "links", "Locations": "locations", "Networks": "networks",
           "Vms": "vms", "Migrations": "migrations", "Audit": "audit", "Events": "events"}[k]
    schemas[k + "List"] = listOf(key, item)

errs = {s: {"$ref": "#/components/responses/Error"} for s in ["400", "401", "403", "404", "409", "413", "422", "429", "500", "501", "503", "507"]}
def resp(schema, code="200", desc="OK"):
    r = {code: {"description": desc, "content": {"application/json": {"schema": S(schema)}}}}
    r.update(errs); return r
def body(schema): return {"required": True, "content": {"application/json": {"schema": schema}}}
p = lambda n, d="": {"name": n, "in": "path", "required": True, "schema": name, "description": d}
q = lambda n, t, d: {"name": n, "in": "query", "required": False, "schema": t, "description": d}

paths = {
 "/v1/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
 "/v1/health": {"get": {"summary": "Alive, and whether it leads", "responses": resp("Health")}},
 "/v1/leader": {"get": {"summary": "The leader lease as this controller sees it", "responses": resp("Leader")}},
 "/v1/sites": {"get": {"summary": "Every site with its facts", "responses": resp("SitesList")}},
 "/v1/sites/{name}": {"get": {"summary": "One site with its hosts", "parameters": [p("name")], "responses": resp("SiteDetail")},
                      "patch": {"summary": "Change a site's facts (operator)", "parameters": [p("name")],
                                "requestBody": body({"type": "object", "additionalProperties": False, "properties": {
                                   "jurisdictions": arr(string), "vcpu_overcommit": num, "price": S("Price"), "water_marks": S("WaterMarks"),
                                   "networks": arr(string), "default_network": string}}),
                                "responses": resp("Site")}},
 "/v1/sites/{name}/drain": {"get": {"summary": "What draining the site would move where, and what cannot leave (with the clause)", "parameters": [p("name")], "responses": resp("Drain")},
                            "post": {"summary": "Drain the site: every VM that may leave moves, a bounded number at a time per link (operator)", "parameters": [p("name")],
                                     "requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": False, "properties": {"reason": string}}}}},
                                     "responses": resp("Drain", "202", "Started; the plan as it stands now")}},
 "/v1/mobility": {"get": {"summary": "Whether the mobility loop is paused, and what it would do now and why", "responses": resp("Mobility")}},
 "/v1/mobility/pause": {"post": {"summary": "Pause the mobility loop (operator; drains and operators' moves go on)", "responses": resp("Paused")}},
 "/v1/mobility/resume": {"post": {"summary": "Resume the mobility loop (operator)", "responses": resp("Paused")}},
 "/v1/hosts": {"get": {"summary": "Every agent host with capacity and use as last reported", "responses": resp("HostsList")}},
 "/v1/links": {"get": {"summary": "Links between sites: RTT and throughput in use, measured by the agents while fresh, else configured (rtt_source, mbps_source)", "responses": resp("LinksList")}},
 "/v1/links/{a}/{b}": {"put": {"summary": "Record a link's configured RTT and throughput (operator); fresh measurements win over them", "parameters": [p("a"), p("b")],
                       "requestBody": body(obj({"rtt_ms": num, "mbps": num})), "responses": resp("Link")}},
 "/v1/locations": {"get": {"summary": "Named user locations", "responses": resp("LocationsList")}},
 "/v1/locations/{name}": {"put": {"summary": "Define a location's RTT to each site (operator)", "parameters": [p("name")],
                          "requestBody": body(obj({"rtt_ms": {"type": "object", "additionalProperties": num}})), "responses": resp("Location")}},
 "/v1/networks": {"get": {"summary": "Network mappings across sites", "responses": resp("NetworksList")}},
 "/v1/networks/{name}": {"put": {"summary": "Map one network across sites (operator)", "parameters": [p("name")],
                         "requestBody": body(obj({"members": {"type": "object", "additionalProperties": string}})), "responses": resp("NetworkMapping")}},
 "/v1/vms": {"get": {"summary": "Every VM", "responses": resp("VmsList")},
             "post": {"summary": "Import an uploaded package as a new VM (operator): placed at the cheapest site that keeps its SLA, has room and a network for each NIC, or at the named site (refused with the clause); the chosen agent imports it with the networks mapped; started when asked",
                      "requestBody": body({"type": "object", "additionalProperties": False, "required": ["id", "package"], "properties": {
                          "id": name, "package": string, "vs": string, "site": name,
                          "network_map": {"type": "object", "additionalProperties": string, "description": "OVF network -> site network"},
                          "start": boolean, "lax": boolean, "reason": {"type": "string", "maxLength": 500}}}),
                      "responses": resp("ImportedVm", "201", "Imported (and started when asked)")}},
 "/v1/packages": {"get": {"summary": "Packages uploaded to this controller, the bound of one upload and the space left", "responses": resp("UploadList")}},
 "/v1/packages/{name}": {"put": {"summary": "Upload an .ova (operator): streamed to disk, bounded, verified (digests, descriptor, signature) before it is kept; nothing is left if anything fails",
                                 "parameters": [p("name"), q("lax", boolean, "accept a package with problems a lax import tolerates")],
                                 "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                                 "responses": resp("Upload", "201", "Kept")},
                         "get": {"summary": "An uploaded package: its virtual systems with their SLA, and where placement would put the first now", "parameters": [p("name"), q("vs", string, "this virtual system"), q("site", name, "at this site")], "responses": resp("PackageDetail")},
                         "delete": {"summary": "Remove an uploaded package (operator)", "parameters": [p("name")], "responses": resp("Deleted")}},
 "/v1/vms/{name}": {"get": {"summary": "One VM", "parameters": [p("name")], "responses": resp("Vm")}},
 "/v1/vms/{name}/preflight": {"get": {"summary": "Could this VM move to a site now, and if not why", "parameters": [p("name"), dict(q("to", name, "target site"), required=True)], "responses": resp("Preflight")}},
 "/v1/vms/{name}/migrate": {"post": {"summary": "Move a running VM live to another site (operator)", "parameters": [p("name")],
                            "requestBody": body({"type": "object", "additionalProperties": False, "required": ["to"], "properties": {"to": name, "reason": {"type": "string", "maxLength": 500}}}),
                            "responses": resp("Migration", "202", "Started; follow it with GET /v1/migrations/{id}")}},
 "/v1/vms/{name}/start": {"post": {"summary": "Start a VM where it is (operator; refused if its site breaks its SLA)", "parameters": [p("name")], "responses": resp("VmAction")}},
 "/v1/vms/{name}/stop": {"post": {"summary": "Stop a VM (operator)", "parameters": [p("name")], "responses": resp("VmAction")}},
 "/v1/migrations": {"get": {"summary": "Migrations, newest first", "parameters": [q("vm", name, "only this VM's"), q("max", {"type": "integer", "minimum": 1, "maximum": 1000}, "at most")], "responses": resp("MigrationsList")}},
 "/v1/migrations/{id}": {"get": {"summary": "One migration with the agent's full report", "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}, q("wait_ms", {"type": "integer", "minimum": 0, "maximum": 30000}, "answer when it ends, or after this long")], "responses": resp("MigrationDetail")}},
 "/v1/placement/vm": {"post": {"summary": "Where a new VM would be placed (at a named site, or the cheapest that keeps its SLA), and what its networks become; a question: any role, changes nothing", 
   "requestBody": body({"type": "object", "additionalProperties": False, "required": ["vcpus", "memory_mib"], "properties": {
       "name": name, "vcpus": {"type": "integer", "minimum": 1}, "memory_mib": {"type": "integer", "minimum": 1}, "disk_gib": integer,
       "sla": S("Sla"), "networks": arr(string), "network_map": {"type": "object", "additionalProperties": string}, "site": name}}),
   "responses": resp("NewVmPlacement")}},
 "/v1/sla": {"get": {"summary": "Every VM's SLA against where it runs", "responses": resp("SlaStatus")}},
 "/v1/placement": {"get": {"summary": "What the placement engine would do with the inventory as it is", "responses": resp("Placement")}},
 "/v1/audit": {"get": {"summary": "The audit log: every request that changed or tried to change something", "parameters": [q("after", {"type": "integer"}, "entries after this seq"), q("who", string, "only this caller"), q("target", string, "only about this VM or site"), q("max", {"type": "integer", "minimum": 1, "maximum": 1000}, "at most")], "responses": resp("AuditList")}},
 "/v1/session": {"post": {"summary": "Sign in to the web console: sets the session cookie (Secure, HttpOnly, SameSite=Strict) and gives the CSRF token every change made with it must send as X-CSRF-Token; 401 for a wrong name or password, 429 after repeated failures",
                          "requestBody": body(obj({"user": string, "password": string})), "responses": resp("Session")},
                 "get": {"summary": "The signed-in session (401: none)", "responses": resp("Session")},
                 "delete": {"summary": "Sign out (needs X-CSRF-Token)", "responses": dict({"204": {"description": "Signed out"}}, **errs)}},
 "/v1/stream": {"get": {"summary": "Server-sent events for consoles: hello; migration (each running migration's phase and progress at least once a second, and its end; docs/console/api.md); changed {what} (a list to fetch again). 503 when too many streams are open",
                        "responses": dict({"200": {"description": "text/event-stream, held open", "content": {"text/event-stream": {"schema": {"type": "string"}}}}}, **errs)}},
 "/v1/migrations/{id}/cancel": {"post": {"summary": "Cancel a running migration before its switchover (operator): the source rolls it back and the VM runs on where it was; 409 when too late or ended",
                                         "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                                         "requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": False, "properties": {"reason": string}}}}},
                                         "responses": resp("Migration", "202", "Asked; the stream and GET /v1/migrations/{id} show the end")}},
 "/v1/migrations/{id}/samples": {"get": {"summary": "What the controller saw of a migration about once a second: throughput, dirty rate, bytes over the WAN",
                                         "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}], "responses": resp("Samples")}},
 "/v1/events": {"get": {"summary": "What the controller noticed (leadership, hosts, migrations, SLA)", "parameters": [q("after", {"type": "integer"}, "events after this seq"), q("max", {"type": "integer", "minimum": 1, "maximum": 1000}, "at most")], "responses": resp("EventsList")}},
}
doc = {"openapi": "3.1.0",
       "info": {"title": "vandra controller API", "version": "1",
                "description": "One control plane for every site. Mutual TLS: the client certificate's CN says who asks and its OU the role (operator: everything; viewer: GET only, any change is 403 and changes nothing). Every change is in the audit log. Prometheus metrics are at /metrics (outside /v1). With the web console on (vandra-controller --console), a browser signs in instead (POST /v1/session): its session cookie stands for the certificate, and every change made with it carries X-CSRF-Token."},
       "servers": [{"url": "https://127.0.0.1:9440"}],
       "paths": paths,
       "components": {"schemas": schemas, "responses": {"Error": {"description": "An error naming what was wrong", "content": {"application/json": {"schema": S("Error")}}}}}}
print(json.dumps(doc, indent=1))
