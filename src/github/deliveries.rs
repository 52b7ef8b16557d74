//! The app's webhook deliveries, as GitHub recorded them: `GET /app/hook/deliveries` (newest
//! first, paged by a `cursor` that only the `Link` header carries) and
//! `POST /app/hook/deliveries/{delivery_id}/attempts` (GitHub answers 202 and sends the same
//! delivery again, same `X-GitHub-Delivery`). Both as the app (JWT).
//!
//! The listing is sent by hand through octocrab's client: octocrab's
//! `apps().webhook().deliveries().send()` returns the items only and drops the `Link` header, so
//! the next cursor cannot be followed with it. Its `Delivery` model reads the items; the
//! redelivery is octocrab's typed call.

use http::Method;

use super::app::GithubApp;
use super::models::HookDelivery;
use super::stack::{self, from_octocrab, route, RequestMeta};
use super::GithubError;

/// One page of deliveries and the cursor of the next, if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPage {
    pub deliveries: Vec<HookDelivery>,
    pub next_cursor: Option<String>,
}

/// The `cursor` of the `rel="next"` link in a `Link` header.
pub fn next_cursor(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then_some(())?;
        let target = target.trim().trim_start_matches('<').trim_end_matches('>');
        let url = url::Url::parse(target).ok()?;
        url.query_pairs()
            .find(|(k, _)| k == "cursor")
            .map(|(_, v)| v.into_owned())
    })
}

fn from_model(d: octocrab::models::hooks::Delivery) -> HookDelivery {
    let event = serde_json::to_value(&d.event)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    HookDelivery {
        id: d.id.0,
        guid: d.guid,
        delivered_at_unix: u64::try_from(d.delivered_at.timestamp()).unwrap_or(0),
        redelivery: d.redelivery,
        status: d.status,
        status_code: u16::try_from(d.status_code).unwrap_or(0),
        event,
        action: d.action,
        installation_id: d.installation_id.map(|i| i.0),
    }
}

impl GithubApp {
    /// One page of the app's deliveries, newest first, from `cursor` (the first page when
    /// `None`).
    pub async fn hook_deliveries(
        &self,
        cursor: Option<&str>,
        per_page: u8,
    ) -> Result<DeliveryPage, GithubError> {
        let per_page = per_page.clamp(1, 100).to_string();
        let mut query = vec![("per_page", per_page.as_str())];
        if let Some(c) = cursor {
            query.push(("cursor", c));
        }
        let path = route(&["app", "hook", "deliveries"], &query);
        let raw = stack::send(
            &self.as_app()?,
            Method::GET,
            &path,
            None,
            RequestMeta::PLAIN,
        )
        .await?
        .ok()?;
        let next_cursor = raw
            .headers
            .get(http::header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_cursor);
        let items: Vec<octocrab::models::hooks::Delivery> = raw.json()?;
        Ok(DeliveryPage {
            deliveries: items.into_iter().map(from_model).collect(),
            next_cursor,
        })
    }

    /// Asks GitHub to send delivery `id` again.
    pub async fn redeliver(&self, id: u64) -> Result<(), GithubError> {
        let path = format!("/app/hook/deliveries/{id}/attempts");
        self.as_app()?
            .apps()
            .redeliver_webhook_delivery(octocrab::models::HookDeliveryId(id))
            .await
            .map_err(|e| from_octocrab(e, &Method::POST, &path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_cursor_comes_from_the_link_header() {
        let link = "<https://api.github.com/app/hook/deliveries?per_page=2&cursor=v1_12077215967>; rel=\"next\", <https://api.github.com/app/hook/deliveries?per_page=2>; rel=\"first\"";
        assert_eq!(next_cursor(link).as_deref(), Some("v1_12077215967"));
        assert_eq!(
            next_cursor("<https://api.github.com/app/hook/deliveries?per_page=2>; rel=\"first\""),
            None
        );
        assert_eq!(next_cursor("garbage"), None);
    }
}
