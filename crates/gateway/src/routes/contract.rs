//! The OpenAPI document against the router: every route the router serves
//! is in `/openapi.json` with its method, and every path and method the
//! document names is served. Read from the router's source (axum does not
//! list a router's routes), so a route added without its documentation
//! fails here, and so does documentation of a route that is gone.

use std::collections::BTreeSet;

use super::PURCHASES;

const ROUTER_SOURCE: &str = include_str!("mod.rs");
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// `(method, path)` of every `.route(path, method(handler))` in the source.
fn routed() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    let mut rest = ROUTER_SOURCE;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let (path_token, after) = rest.split_once(',').expect("a route's path and service");
        let path = match path_token.trim() {
            "PURCHASES" => PURCHASES.to_string(),
            literal => literal.trim_matches('"').to_string(),
        };
        let method = METHODS
            .iter()
            .filter_map(|m| after.find(&format!("{m}(")).map(|i| (i, *m)))
            .min()
            .map(|(_, m)| m)
            .expect("a route with a method");
        routes.insert((method.to_string(), path));
    }
    routes
}

fn documented() -> BTreeSet<(String, String)> {
    let document: serde_json::Value =
        serde_json::from_str(include_str!("../../openapi.json")).expect("valid JSON");
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, operations)| {
            let operations = operations.as_object().expect("operations");
            operations
                .keys()
                .filter(|key| METHODS.contains(&key.as_str()))
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect()
}

#[test]
fn the_openapi_document_and_the_router_name_the_same_routes() {
    let (routed, documented) = (routed(), documented());
    assert!(
        routed.len() >= 9,
        "the source reading found too few routes: {routed:?}"
    );
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.json: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "openapi.json names routes nobody serves: {unserved:?}"
    );
}

#[test]
fn every_documented_operation_says_what_its_problems_are() {
    let document: serde_json::Value =
        serde_json::from_str(include_str!("../../openapi.json")).expect("valid JSON");
    for (method, path) in documented() {
        let responses = &document["paths"][&path][&method]["responses"];
        assert!(responses.is_object(), "{method} {path}: no responses");
        let guarded = document["paths"][&path][&method]["security"].is_array();
        if guarded {
            assert!(
                responses["401"].is_object(),
                "{method} {path}: guarded without a 401"
            );
        }
    }
}
