//! axum's extractors with their rejections turned into [`WebError`], so a
//! bad path, query or body gets the same error shape (a page, or the API's
//! JSON) as every other failure, saying which value was wrong and why.

use axum::extract::{FromRequest, FromRequestParts};

use crate::WebError;

/// Path parameters.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(WebError))]
pub struct Path<T>(pub T);

/// Query parameters.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(WebError))]
pub struct Query<T>(pub T);

/// A form body.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Form), rejection(WebError))]
pub struct Form<T>(pub T);

/// A JSON body.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(WebError))]
pub struct Json<T>(pub T);
