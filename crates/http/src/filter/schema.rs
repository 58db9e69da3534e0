//! The shapes Consul filters, as go-bexpr sees them: the Go structs behind
//! each endpoint's elements, with the fields a selector may name (struct
//! field names, matched exactly; Consul hides its Raft indexes and a few
//! opaque fields with `bexpr:"-"`).

/// A field's type, which decides the operators it takes, how a value is
/// coerced, and what an absent field reads as.
#[derive(Debug)]
pub enum Ty {
    Str,
    Int,
    Uint,
    Float,
    Bool,
    /// A slice; a selector may reach through one of structs, matching if
    /// any element matches.
    List(&'static Ty),
    /// A map with string keys; any key is a valid selector step.
    Map(&'static Ty),
    Struct(&'static [(&'static str, Ty)]),
}

impl Ty {
    pub fn is_primitive(&self) -> bool {
        matches!(self, Ty::Str | Ty::Int | Ty::Uint | Ty::Float | Ty::Bool)
    }

    /// The field `name` of a struct (through slices of structs).
    pub fn field(&self, name: &str) -> Option<&'static Ty> {
        match self {
            Ty::Struct(fields) => fields.iter().find(|(n, _)| *n == name).map(|(_, t)| t),
            Ty::List(elem) if !elem.is_primitive() => elem.field(name),
            _ => None,
        }
    }

    /// The JSON an absent field stands for: Go's zero value.
    pub fn zero(&self) -> serde_json::Value {
        match self {
            Ty::Str => "".into(),
            Ty::Int | Ty::Uint | Ty::Float => 0.into(),
            Ty::Bool => false.into(),
            Ty::List(_) => serde_json::Value::Array(Vec::new()),
            Ty::Map(_) | Ty::Struct(_) => serde_json::Value::Object(Default::default()),
        }
    }
}

const STR_MAP: Ty = Ty::Map(&Ty::Str);
const STR_LIST: Ty = Ty::List(&Ty::Str);

const LOCALITY: Ty = Ty::Struct(&[("Region", Ty::Str), ("Zone", Ty::Str)]);

const WEIGHTS: Ty = Ty::Struct(&[("Passing", Ty::Int), ("Warning", Ty::Int)]);

const SERVICE_ADDRESS: Ty = Ty::Struct(&[("Address", Ty::Str), ("Port", Ty::Int)]);

const MESH_GATEWAY: Ty = Ty::Struct(&[("Mode", Ty::Str)]);

const UPSTREAM: Ty = Ty::Struct(&[
    ("DestinationType", Ty::Str),
    ("DestinationNamespace", Ty::Str),
    ("DestinationPartition", Ty::Str),
    ("DestinationPeer", Ty::Str),
    ("DestinationName", Ty::Str),
    ("Datacenter", Ty::Str),
    ("LocalBindAddress", Ty::Str),
    ("LocalBindPort", Ty::Int),
    ("LocalBindSocketPath", Ty::Str),
    ("LocalBindSocketMode", Ty::Str),
    ("MeshGateway", MESH_GATEWAY),
    ("CentrallyConfigured", Ty::Bool),
]);

const EXPOSE_PATH: Ty = Ty::Struct(&[
    ("ListenerPort", Ty::Int),
    ("Path", Ty::Str),
    ("LocalPathPort", Ty::Int),
    ("Protocol", Ty::Str),
    ("ParsedFromCheck", Ty::Bool),
]);

const PROXY: Ty = Ty::Struct(&[
    ("DestinationServiceName", Ty::Str),
    ("DestinationServiceID", Ty::Str),
    ("LocalServiceAddress", Ty::Str),
    ("LocalServicePort", Ty::Int),
    ("LocalServiceSocketPath", Ty::Str),
    ("Mode", Ty::Str),
    (
        "TransparentProxy",
        Ty::Struct(&[
            ("OutboundListenerPort", Ty::Int),
            ("DialedDirectly", Ty::Bool),
        ]),
    ),
    ("Upstreams", Ty::List(&UPSTREAM)),
    ("MeshGateway", MESH_GATEWAY),
    (
        "Expose",
        Ty::Struct(&[("Checks", Ty::Bool), ("Paths", Ty::List(&EXPOSE_PATH))]),
    ),
]);

const CONNECT: Ty = Ty::Struct(&[("Native", Ty::Bool)]);

/// `structs.Node`: `/v1/catalog/nodes`.
pub const NODE: Ty = Ty::Struct(&[
    ("ID", Ty::Str),
    ("Node", Ty::Str),
    ("Address", Ty::Str),
    ("Datacenter", Ty::Str),
    ("Partition", Ty::Str),
    ("PeerName", Ty::Str),
    ("TaggedAddresses", STR_MAP),
    ("Meta", STR_MAP),
    ("Locality", LOCALITY),
]);

/// `structs.ServiceNode`: `/v1/catalog/service/:name` (and the rows
/// `/v1/catalog/services` groups).
pub const SERVICE_NODE: Ty = Ty::Struct(&[
    ("ID", Ty::Str),
    ("Node", Ty::Str),
    ("Address", Ty::Str),
    ("Datacenter", Ty::Str),
    ("TaggedAddresses", STR_MAP),
    ("NodeMeta", STR_MAP),
    ("ServiceKind", Ty::Str),
    ("ServiceID", Ty::Str),
    ("ServiceName", Ty::Str),
    ("ServiceTags", STR_LIST),
    ("ServiceAddress", Ty::Str),
    ("ServiceTaggedAddresses", Ty::Map(&SERVICE_ADDRESS)),
    ("ServiceWeights", WEIGHTS),
    ("ServiceMeta", STR_MAP),
    ("ServicePort", Ty::Int),
    ("ServiceSocketPath", Ty::Str),
    ("ServiceEnableTagOverride", Ty::Bool),
    ("ServiceProxy", PROXY),
    ("ServiceConnect", CONNECT),
    ("ServiceLocality", LOCALITY),
    ("PeerName", Ty::Str),
]);

/// `structs.NodeService`: `/v1/catalog/node-services/:node`.
pub const NODE_SERVICE: Ty = Ty::Struct(&[
    ("Kind", Ty::Str),
    ("ID", Ty::Str),
    ("Service", Ty::Str),
    ("Tags", STR_LIST),
    ("Address", Ty::Str),
    ("TaggedAddresses", Ty::Map(&SERVICE_ADDRESS)),
    ("Meta", STR_MAP),
    ("Port", Ty::Int),
    ("SocketPath", Ty::Str),
    ("Weights", WEIGHTS),
    ("EnableTagOverride", Ty::Bool),
    ("Proxy", PROXY),
    ("Connect", CONNECT),
    ("Locality", LOCALITY),
    ("PeerName", Ty::Str),
]);

/// `structs.HealthCheck`: `/v1/health/{node,checks,state}` and
/// `/v1/agent/checks`.
pub const HEALTH_CHECK: Ty = Ty::Struct(&[
    ("Node", Ty::Str),
    ("CheckID", Ty::Str),
    ("Name", Ty::Str),
    ("Status", Ty::Str),
    ("Notes", Ty::Str),
    ("Output", Ty::Str),
    ("ServiceID", Ty::Str),
    ("ServiceName", Ty::Str),
    ("ServiceTags", STR_LIST),
    ("Type", Ty::Str),
    ("Interval", Ty::Str),
    ("Timeout", Ty::Str),
    ("ExposedPort", Ty::Int),
    ("PeerName", Ty::Str),
]);

/// `structs.CheckServiceNode`: `/v1/health/service/:name`.
pub const CHECK_SERVICE_NODE: Ty = Ty::Struct(&[
    ("Node", NODE),
    ("Service", NODE_SERVICE),
    ("Checks", Ty::List(&HEALTH_CHECK)),
]);

/// `api.AgentService`: `/v1/agent/services`.
pub const AGENT_SERVICE: Ty = Ty::Struct(&[
    ("Kind", Ty::Str),
    ("ID", Ty::Str),
    ("Service", Ty::Str),
    ("Tags", STR_LIST),
    ("Meta", STR_MAP),
    ("Port", Ty::Int),
    ("Address", Ty::Str),
    ("SocketPath", Ty::Str),
    ("TaggedAddresses", Ty::Map(&SERVICE_ADDRESS)),
    ("Weights", WEIGHTS),
    ("EnableTagOverride", Ty::Bool),
    ("Proxy", PROXY),
    ("Connect", CONNECT),
    ("PeerName", Ty::Str),
    ("Namespace", Ty::Str),
    ("Partition", Ty::Str),
    ("Datacenter", Ty::Str),
    ("Locality", LOCALITY),
]);
