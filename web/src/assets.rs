//! The UI's static files (`web/assets`: stylesheet, script, and the
//! vendored Chart.js with its licence), built into the binary so that the
//! UI needs nothing from the internet.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::WebError;

#[derive(RustEmbed)]
#[folder = "assets"]
struct AssetFiles;

/// `GET /assets/{path}`: the file, with its content type; assets may be
/// cached for an hour.
pub async fn serve(Path(path): Path<String>) -> Result<Response, WebError> {
    let file =
        AssetFiles::get(&path).ok_or_else(|| WebError::NotFound(format!("no asset `{path}`")))?;
    let mime = mime_guess::from_path(&path).first_or_octet_stream();
    let mut response = file.data.into_owned().into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(mime.as_ref()) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    Ok(response)
}
