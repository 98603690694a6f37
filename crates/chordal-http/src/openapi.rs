//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of every route.
//!
//! Written by hand beside the handlers; the tests below check it against
//! the router both ways (every route and method served is documented, and
//! every documented one is served).

use axum::Json;
use serde_json::{Value, json};

/// An error response as every route answers them.
fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn json_body(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn key_param(name: &str) -> Value {
    json!({
        "name": name, "in": "path", "required": true,
        "description": "Percent-encoded UTF-8; its id on the ring is SHA-1 of its bytes.",
        "schema": {"type": "string", "maxLength": 1024}
    })
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn header(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "header", "required": false, "description": description, "schema": {"type": "string"}})
}

/// The written answer of a put or delete.
fn stored_schema() -> Value {
    json!({
        "type": "object",
        "required": ["key", "version", "replicas_acked", "replicas"],
        "properties": {
            "key": {"type": "string"},
            "version": {"type": "string", "description": "<hlc>-<vnode id hex>"},
            "replicas_acked": {"type": "integer"},
            "replicas": {"type": "integer", "description": "R, the copies the ring keeps"}
        }
    })
}

/// `/v1/kv/{key}`: get, put, delete.
fn kv_path(unavailable: &Value) -> Value {
    json!({
        "get": {
            "summary": "Read a value: raw bytes with X-Chordal-Version, ETag and (if it expires) X-Chordal-Expires",
            "parameters": [
                key_param("key"),
                query("consistency", "one (the owner's copy, default), quorum or all: newest wins, stale copies are repaired", json!({"enum": ["one", "quorum", "all"]})),
                query("local", "true: this node's own copy, without routing", json!({"type": "boolean"}))
            ],
            "responses": {
                "200": {"description": "The value", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                "400": error("Bad key or consistency"),
                "404": error("No such key (or deleted, or expired)"),
                "503": unavailable.clone()
            }
        },
        "put": {
            "summary": "Store the body as the key's value",
            "parameters": [
                key_param("key"),
                query("ttl", "Seconds until the value expires", json!({"type": "integer", "minimum": 1})),
                header("X-Chordal-Expires", "Expire at these Unix seconds instead of a ttl"),
                header("If-None-Match", "\"*\": create only"),
                header("If-Match", "<version>: only if that is the current version (\"*\": only if the key exists)")
            ],
            "requestBody": {"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            "responses": {
                "200": json_body("Stored on the write quorum", json!({"$ref": "#/components/schemas/Stored"})),
                "400": error("Bad key, ttl or condition"),
                "412": error("The condition does not hold; nothing written (version: the current one)"),
                "413": error("Value over the limit"),
                "503": unavailable.clone(),
                "507": error("The owner's storage is full or failing")
            }
        },
        "delete": {
            "summary": "Delete the key (a tombstone)",
            "parameters": [key_param("key"), header("If-Match", "<version>: only if that is the current version")],
            "responses": {
                "200": json_body("The tombstone's write", json!({"$ref": "#/components/schemas/Stored"})),
                "404": error("No such key"),
                "412": error("The condition does not hold; nothing deleted"),
                "503": unavailable.clone(),
                "507": error("The owner's storage is full or failing")
            }
        }
    })
}

/// `/v1/kv:batch`.
fn batch_path() -> Value {
    let any = json!({"type": "object"});
    let _ = &any;
    json!({"post": {
        "summary": "Many gets, puts and deletes at once (at most 1000; the body within the value limit); results in order, each with the status its single-key route would give",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {
            "type": "object", "required": ["ops"],
            "properties": {"ops": {"type": "array", "maxItems": 1000, "items": {
                "type": "object", "required": ["op", "key"],
                "properties": {
                    "op": {"enum": ["get", "put", "delete"]},
                    "key": {"type": "string"},
                    "value_b64": {"type": "string", "contentEncoding": "base64"},
                    "ttl": {"type": "integer", "minimum": 1},
                    "if_absent": {"type": "boolean"},
                    "if_version": {"type": "string"},
                    "consistency": {"enum": ["one", "quorum", "all"]}
                }
            }}}
        }}}},
        "responses": {
            "200": json_body("One result per op", json!({
                "type": "object",
                "properties": {"results": {"type": "array", "items": {
                    "type": "object", "required": ["status", "key"],
                    "properties": {
                        "status": {"type": "integer"}, "key": {"type": "string"},
                        "value_b64": {"type": "string"}, "version": {"type": "string"},
                        "expires": {"type": "integer"}, "replicas_acked": {"type": "integer"},
                        "code": {"type": "string"}, "error": {"type": "string"}
                    }
                }}}
            })),
            "400": error("Not a batch, or more than 1000 ops"),
            "413": error("Body over the limit")
        }
    }})
}

/// The document.
///
/// Long on purpose: one JSON literal, the document as a client reads it.
pub fn document() -> Value {
    let any = json!({"type": "object"});
    let unavailable =
        error("Overloaded (with Retry-After), lookup failed, quorum failed or unavailable");
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Chordal node API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The HTTP/JSON API of one node of a Chordal ring (docs/http-api.md). Any node serves any key: it finds the key's owner on the ring. With --api-tokens every route but /v1/health needs `Authorization: Bearer TOKEN` (roles read, write, admin)."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Record": {
                    "type": "object",
                    "required": ["key_b64", "version"],
                    "properties": {
                        "key_b64": {"type": "string", "description": "The key's bytes, base64"},
                        "value_b64": {"type": "string", "description": "The value's bytes, base64; absent for a tombstone"},
                        "version": {"type": "string", "description": "<hlc>-<vnode id hex>"},
                        "expires_us": {"type": "integer", "description": "Expiry, µs of the Unix epoch; absent: never"}
                    }
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "code"],
                    "properties": {
                        "error": {"type": "string"},
                        "code": {"type": "string"},
                        "version": {"type": ["string", "null"], "description": "412: the key's current version"}
                    }
                },
                "Node": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "addr": {"type": "string"}, "api": {"type": ["string", "null"]}}
                },
                "Stored": stored_schema(),
                "Finger": {
                    "type": "object", "required": ["index", "start", "node"],
                    "properties": {
                        "index": {"type": "integer", "description": "i: the finger covers ids from start = n + 2^i"},
                        "start": {"type": "string", "description": "Id, hex"},
                        "node": {"$ref": "#/components/schemas/Node"}
                    }
                },
                "VNode": {
                    "type": "object", "required": ["id", "successors", "fingers"],
                    "properties": {
                        "id": {"type": "string"},
                        "predecessor": {"oneOf": [{"$ref": "#/components/schemas/Node"}, {"type": "null"}]},
                        "successors": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
                        "fingers": {"type": "array", "items": {"$ref": "#/components/schemas/Finger"}}
                    }
                },
                "NodeStatus": {
                    "type": "object",
                    "required": ["id", "addr", "cluster", "successors", "fingers", "keys_stored", "vnodes", "stats"],
                    "properties": {
                        "id": {"type": "string", "description": "The primary vnode's id, hex"},
                        "addr": {"type": "string", "description": "Peer address"},
                        "api": {"type": ["string", "null"]},
                        "service": {"type": ["string", "null"], "description": "--service"},
                        "cluster": {"type": "string"},
                        "version": {"type": "string", "description": "The release it runs"},
                        "protocol": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2, "description": "Peer-protocol versions spoken, oldest and newest"},
                        "predecessor": {"oneOf": [{"$ref": "#/components/schemas/Node"}, {"type": "null"}]},
                        "successors": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
                        "fingers": {"type": "array", "items": {"$ref": "#/components/schemas/Finger"}},
                        "keys_stored": {"type": "integer", "description": "Records stored: every copy, replicas and uncollected tombstones included"},
                        "storage_problem": {"type": ["string", "null"]},
                        "ring_size_estimate": {"type": ["number", "null"]},
                        "routing": {"enum": ["onehop", "chord"]},
                        "membership": {"type": "object", "description": "One-hop routing's membership table: entries, processes, bytes, capacity and the events it took"},
                        "vnodes": {"type": "array", "items": {"$ref": "#/components/schemas/VNode"}},
                        "stats": {"type": "object", "description": "Wire counters"}
                    }
                },
                "Ring": {
                    "type": "object", "required": ["nodes", "count", "problems", "down"],
                    "properties": {
                        "nodes": {"type": "array", "description": "In ring order from the node asked", "items": {
                            "type": "object", "required": ["id", "addr", "keys_stored", "successors"],
                            "properties": {
                                "id": {"type": "string"}, "addr": {"type": "string"},
                                "api": {"type": ["string", "null"]}, "service": {"type": ["string", "null"]},
                                "keys_stored": {"type": "integer", "description": "Records its process stores, replicas and uncollected tombstones included"},
                                "predecessor": {"type": ["string", "null"], "description": "Id, hex"},
                                "successors": {"type": "array", "items": {"type": "string"}}
                            }
                        }},
                        "count": {"type": "integer"},
                        "problems": {"type": "array", "items": {"type": "string"}, "description": "What looks wrong, in words"},
                        "down": {"type": "array", "description": "Processes the node asked saw fail or leave in the last ten minutes that the walk did not find", "items": {
                            "type": "object", "required": ["id", "addr", "left", "seconds_ago"],
                            "properties": {
                                "id": {"type": "string"}, "addr": {"type": "string"}, "api": {"type": ["string", "null"]},
                                "left": {"type": ["boolean", "null"], "description": "true: a graceful leave; false: it stopped answering; null: the ring's membership news said it is gone, without saying how"},
                                "seconds_ago": {"type": "integer"}
                            }
                        }}
                    }
                },
                "Located": {
                    "type": "object", "required": ["key", "key_id", "owner", "replicas", "hops", "path"],
                    "properties": {
                        "key": {"type": "string"},
                        "key_id": {"type": "string", "description": "SHA-1 of the key (or of its hash tag), hex"},
                        "owner": {"$ref": "#/components/schemas/Node"},
                        "replicas": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
                        "hops": {"type": "integer"},
                        "path": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}, "description": "The nodes the lookup went through"}
                    }
                }
            }
        },
        "security": [{}, {"bearer": []}],
        "paths": {
            "/v1/health": {"get": {
                "summary": "Liveness and readiness: 200 once the node has joined",
                "responses": {
                    "200": json_body("Joined (status ok, or degraded with the storage problem)", any.clone()),
                    "503": error("Not joined yet")
                }
            }},
            "/v1/openapi.json": {"get": {
                "summary": "This document",
                "responses": {"200": json_body("OpenAPI 3.1", any.clone())}
            }},
            "/metrics": {"get": {
                "summary": "Prometheus text format",
                "responses": {"200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}
            }},
            "/": {"get": {
                "summary": "The dashboard (HTML)",
                "responses": {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}}
            }},
            "/v1/events": {"get": {
                "summary": "Server-sent events of the node's ring changes (the dashboard's feed)",
                "responses": {"200": {"description": "An event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}}
            }},
            "/v1/node": {"get": {
                "summary": "This node: id, predecessor, successors, fingers, keys stored, vnodes",
                "responses": {"200": json_body("Routing state", json!({"$ref": "#/components/schemas/NodeStatus"}))}
            }},
            "/v1/ring": {"get": {
                "summary": "Every node in ring order, found by walking successors",
                "responses": {"200": json_body("The ring", json!({"$ref": "#/components/schemas/Ring"})), "503": unavailable.clone()}
            }},
            "/v1/locate/{key}": {"get": {
                "summary": "The key's id, owner, replicas and the lookup's hops",
                "parameters": [key_param("key"), query("mode", "recursive (default) or iterative", json!({"enum": ["recursive", "iterative"]}))],
                "responses": {"200": json_body("Where the key lives", json!({"$ref": "#/components/schemas/Located"})), "400": error("Bad key or mode"), "503": unavailable.clone()}
            }},
            "/v1/kv/{key}": kv_path(&unavailable),
            "/v1/kv:batch": batch_path(),
            "/v1/keys": {
                "get": {
                    "summary": "The ring's keys, a page at a time (RESP SCAN's walk): a key present for the whole walk is returned, whatever nodes join or leave; any node continues a cursor",
                    "parameters": [
                        query("cursor", "Where the walk goes on: 0 (or absent) starts it, each page answers the next, 0 once over", json!({"type": "string", "pattern": "^[0-9]+$"})),
                        query("count", "About how many keys to read (those match leaves out count too)", json!({"type": "integer", "minimum": 1, "maximum": crate::keys::MAX_COUNT, "default": 100})),
                        query("match", "Only keys matching this glob: *, ?, [a-z], [^a], \\x", json!({"type": "string"}))
                    ],
                    "responses": {
                        "200": json_body("A page of keys", json!({
                            "type": "object", "required": ["cursor", "keys"],
                            "properties": {
                                "cursor": {"type": "string", "description": "The next cursor; 0: the walk is over"},
                                "keys": {"type": "array", "items": {"type": "string"}, "description": "Keys that are UTF-8"},
                                "keys_b64": {"type": "array", "items": {"type": "string", "format": "byte"}, "description": "Keys that are not UTF-8, base64"}
                            }
                        })),
                        "400": error("A bad cursor or count"),
                        "503": unavailable.clone()
                    }
                }
            },
            "/v1/admin/records": admin_records_path(),
            "/v1/admin/restore": {
                "post": {
                    "summary": "Put records back with their own versions, unless the ring holds newer ones (chordal restore; role admin)",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["records"],
                        "properties": {"records": {"type": "array", "maxItems": crate::admin::MAX_RESTORE_RECORDS, "items": {"$ref": "#/components/schemas/Record"}}}
                    }}}},
                    "responses": {
                        "200": json_body("How many were restored (durable on the write quorum), how many skipped (the ring holds a newer version), which failed", json!({
                            "type": "object",
                            "properties": {"restored": {"type": "integer"}, "skipped": {"type": "integer", "description": "The ring holds a newer version"}, "failed": {"type": "array", "items": {
                                "type": "object", "required": ["key_b64", "error"],
                                "properties": {"key_b64": {"type": "string"}, "error": {"type": "string"}}
                            }}}
                        })),
                        "400": error("Not a restore body, a bad record, or too many records"),
                        "413": error("Body over the limit")
                    }
                }
            },
            "/v1/admin/leave": {
                "post": {
                    "summary": "The node leaves the ring gracefully and its process stops (chordal leave; role admin)",
                    "responses": {"202": json_body("Leaving", json!({"type": "object"})), "501": error("This server cannot stop its node")}
                }
            },
            "/v1/watch/{key}": {
                "get": {
                    "summary": "Watch a key (or with group=true every key of its hash tag's group): a server-sent-events stream of each new version, one `change` event per write, its id the version (resume with ?from= or Last-Event-ID); data {version, records: [{key, type: string|deleted|hash|set|zset|list, value | value_base64, expires}]}",
                    "parameters": [
                        key_param("key"),
                        query("from", "Start after this version (an event's id, or X-Chordal-Version)", json!({"type": "string"})),
                        query("group", "Every key sharing the key's hash tag", json!({"type": "boolean"}))
                    ],
                    "responses": {"200": {"description": "change events; an error event ends the stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}, "400": error("Bad key or version"), "503": unavailable.clone()}
                }
            },
            "/v1/topics/{topic}": {
                "get": {
                    "summary": "Subscribe: a server-sent-events stream of the topic's publications",
                    "parameters": [key_param("topic")],
                    "responses": {"200": {"description": "Events (binary payloads as event: binary, base64)", "content": {"text/event-stream": {"schema": {"type": "string"}}}}, "503": unavailable.clone()}
                },
                "post": {
                    "summary": "Publish the body on the topic",
                    "parameters": [key_param("topic")],
                    "requestBody": {"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                    "responses": {"200": json_body("Queued for this many subscriber processes", any), "413": error("Message over the limit"), "503": unavailable}
                }
            }
        }
    })
}

/// `/v1/admin/records`: a node's own records of a range, streamed.
fn admin_records_path() -> Value {
    let hex = json!({"type": "string", "pattern": "^[0-9a-f]{40}$"});
    json!({
        "get": {
            "summary": "This node's own records in the ring range (start, end], key-id order, tombstones included, as one moment saw them, streamed as JSON lines and closed by {\"end\":{\"records\":N}} (chordal backup; role admin)",
            "parameters": [
                query("start", "Range start, exclusive (with end; neither: the whole ring)", hex.clone()),
                query("end", "Range end, inclusive", hex),
                query("after", "Resume after this record: its key id in hex, ':', its key in base64", json!({"type": "string"}))
            ],
            "responses": {
                "200": {"description": "One Record per line, then the end line; a stream without it was cut short", "content": {"application/x-ndjson": {"schema": {"$ref": "#/components/schemas/Record"}}}},
                "400": error("Bad range or cursor")
            }
        }
    })
}

/// `GET /v1/openapi.json`.
pub async fn serve() -> Json<Value> {
    Json(document())
}

/// The OpenAPI form of an axum path: `{*key}` → `{key}`.
#[cfg(test)]
fn openapi_path(axum: &str) -> String {
    axum.replace("{*", "{")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{NO_SUCH_ENDPOINT, routes};
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use std::collections::BTreeSet;
    use tower::ServiceExt;

    const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "PATCH"];

    /// (OpenAPI path, method) of every route and method the router serves.
    fn served() -> BTreeSet<(String, String)> {
        routes()
            .iter()
            .flat_map(|r| {
                r.methods
                    .iter()
                    .map(|m| (openapi_path(r.path), m.to_lowercase()))
            })
            .collect()
    }

    fn documented() -> BTreeSet<(String, String)> {
        let doc = document();
        let mut out = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for method in ops.as_object().expect("operations").keys() {
                out.insert((path.clone(), method.clone()));
            }
        }
        out
    }

    /// Asserts that `sample`'s fields are exactly `schema`'s properties and
    /// hold every required one (`schema` inline, or a `$ref`).
    fn fields_are_documented(doc: &Value, schema: &Value, sample: &Value, what: &str) {
        let schema = match schema["$ref"].as_str() {
            Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
            None => schema,
        };
        let props: BTreeSet<&String> = schema["properties"]
            .as_object()
            .expect(what)
            .keys()
            .collect();
        let fields: BTreeSet<&String> = sample.as_object().expect(what).keys().collect();
        assert_eq!(fields, props, "{what}: fields served vs documented");
        for r in schema["required"].as_array().into_iter().flatten() {
            assert!(
                fields.contains(&r.as_str().unwrap().to_string()),
                "{what}: {r}"
            );
        }
    }

    #[test]
    fn the_typed_answers_have_exactly_the_documented_fields() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let node = crate::NodeJson {
            id: "ab".into(),
            addr: "127.0.0.1:7000".into(),
            api: None,
        };
        let ring = crate::RingJson {
            nodes: vec![crate::RingNodeJson {
                id: "ab".into(),
                addr: "127.0.0.1:7000".into(),
                api: None,
                service: None,
                keys_stored: 3,
                predecessor: None,
                successors: vec![],
            }],
            count: 1,
            problems: vec![],
            down: vec![crate::DownJson {
                id: "cd".into(),
                addr: "127.0.0.1:7001".into(),
                api: None,
                left: Some(false),
                seconds_ago: 4,
            }],
        };
        let ring = serde_json::to_value(&ring).unwrap();
        fields_are_documented(&doc, &schemas["Ring"], &ring, "Ring");
        let items = &schemas["Ring"]["properties"];
        fields_are_documented(
            &doc,
            &items["nodes"]["items"],
            &ring["nodes"][0],
            "Ring.nodes",
        );
        fields_are_documented(&doc, &items["down"]["items"], &ring["down"][0], "Ring.down");
        let located = crate::LocateJson {
            key: "k".into(),
            key_id: "ef".into(),
            owner: node.clone(),
            replicas: vec![],
            hops: 1,
            path: vec![],
        };
        let located = serde_json::to_value(&located).unwrap();
        fields_are_documented(&doc, &schemas["Located"], &located, "Located");
        let node_value = serde_json::to_value(&node).unwrap();
        fields_are_documented(&doc, &schemas["Node"], &node_value, "Node");
        // A node's state: its required fields only, read and written back
        // (every field with a default comes back too).
        let status: crate::NodeStatusJson = serde_json::from_value(json!({
            "id": "ab", "addr": "127.0.0.1:7000", "api": null, "cluster": "c",
            "predecessor": null, "successors": [], "keys_stored": 0,
            "ring_size_estimate": null, "stats": {},
            "fingers": [{"index": 0, "start": "ac", "node": node_value}],
            "vnodes": [{"id": "ab", "predecessor": null, "successors": [], "fingers": []}]
        }))
        .unwrap();
        let status = serde_json::to_value(&status).unwrap();
        fields_are_documented(&doc, &schemas["NodeStatus"], &status, "NodeStatus");
        fields_are_documented(&doc, &schemas["Finger"], &status["fingers"][0], "Finger");
        fields_are_documented(&doc, &schemas["VNode"], &status["vnodes"][0], "VNode");
        // The paths use them.
        let answer = |path: &str| {
            doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].clone()
        };
        assert_eq!(answer("/v1/ring"), "#/components/schemas/Ring");
        assert_eq!(answer("/v1/node"), "#/components/schemas/NodeStatus");
        assert_eq!(answer("/v1/locate/{key}"), "#/components/schemas/Located");
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_is_served() {
        let (served, documented) = (served(), documented());
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let missing: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty(),
            "served, not documented: {undocumented:?}"
        );
        assert!(missing.is_empty(), "documented, not served: {missing:?}");
        assert_eq!(document()["openapi"], "3.1.0");
    }

    /// The route table says what the handlers do: each listed method is
    /// answered by its handler, each other one is 405 — so the document,
    /// checked against the table above, is checked against the router.
    #[tokio::test]
    async fn the_route_table_matches_what_the_router_answers() {
        let node = chordal_node::Node::builder().start().await.expect("node");
        let app = crate::router(node.clone(), crate::ApiConfig::default());
        for r in routes() {
            let path = r.path.replace("{*key}", "k").replace("{*topic}", "t");
            for method in METHODS {
                let request = Request::builder()
                    .method(Method::from_bytes(method.as_bytes()).unwrap())
                    .uri(&path)
                    .body(Body::from("{\"ops\":[]}"))
                    .unwrap();
                let response = app.clone().oneshot(request).await.expect("answer");
                let status = response.status();
                if status == StatusCode::NOT_FOUND {
                    // A key not found is fine; the fallback is not. (Other
                    // bodies are not read: streams never end by themselves.)
                    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                        .await
                        .unwrap_or_default();
                    let fallback = String::from_utf8_lossy(&body).contains(NO_SUCH_ENDPOINT);
                    assert!(!fallback, "{method} {path}: the fallback answered");
                }
                if r.methods.contains(&method) {
                    assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                } else {
                    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                }
            }
        }
        node.leave().await;
    }
}
