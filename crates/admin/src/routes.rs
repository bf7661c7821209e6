//! The route table type shared by the API and the page: every route is added through
//! [`router`], from a table whose entries say whether the OpenAPI document describes them.

use axum::Router;
use axum::http::Method;
use axum::routing::MethodRouter;

use crate::AppState;

/// One route: its method and path (as in its `#[utoipa::path]`) and its handler. `documented`
/// is false only for the page and its scripts (HTML and JavaScript, not API).
pub struct Route {
    #[allow(dead_code)] // read by the test that holds the routes and the document to each other
    pub method: Method,
    pub path: &'static str,
    pub handler: fn() -> MethodRouter<AppState>,
    #[allow(dead_code)] // the same
    pub documented: bool,
}

/// Builds a router from route tables: the only way routes are added.
pub fn router(table: Vec<Route>) -> Router<AppState> {
    let mut r = Router::new();
    for route in table {
        r = r.route(route.path, (route.handler)());
    }
    r
}
