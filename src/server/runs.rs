//! `GET /runs/{id}`: a run's live log as one self-contained HTML page (inline CSS and script, no
//! external assets), fed by an EventSource on `/runs/{id}/events` (the same stream as the API).
//! Both need the signed, expiring link of [`super::run_link`]; a missing, forged or expired link
//! gets a 403 page that says which. The script builds the log with `textContent` only, so
//! nothing the agent writes can become markup.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::html::{self, escape};
use super::run_link::LinkError;
use super::{api, AppState};
use crate::store::Job;

#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    exp: Option<String>,
    sig: Option<String>,
}

/// Why a link does not open the run.
enum Refused {
    NotSetUp,
    Link(LinkError),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::NotSetUp => html::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Backspace is not set up yet",
                "Run pages open once the GitHub App is registered.",
            ),
            Refused::Link(e) => {
                let title = match e {
                    LinkError::Expired => "This link has expired",
                    LinkError::BadSignature => "This link is not valid",
                };
                html::message(StatusCode::FORBIDDEN, title, &e.to_string())
            }
        }
    }
}

/// Checks the link's expiry and signature.
fn check_link(state: &AppState, id: &str, q: &LinkQuery) -> Result<(), Refused> {
    let key = state.link_key().ok_or(Refused::NotSetUp)?;
    key.verify(
        id,
        q.exp.as_deref(),
        q.sig.as_deref(),
        state.clock().unix_secs(),
    )
    .map_err(Refused::Link)
}

fn not_found() -> Response {
    html::message(
        StatusCode::NOT_FOUND,
        "No such run",
        "There is no run with this id on this server.",
    )
}

pub async fn page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LinkQuery>,
) -> Response {
    if let Err(r) = check_link(&state, &id, &q) {
        return r.into_response();
    }
    match state.store().job(&id).await {
        Ok(Some(job)) => {
            let events_url = format!(
                "/runs/{id}/events?exp={}&sig={}",
                q.exp.as_deref().unwrap_or(""),
                q.sig.as_deref().unwrap_or("")
            );
            html::respond_with_csp(StatusCode::OK, render_page(&job, &events_url), &page_csp())
        }
        Ok(None) => not_found(),
        Err(e) => {
            tracing::error!(error = %e, "run page: the store failed");
            html::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "The job store is unavailable",
                "Reload the page in a moment.",
            )
        }
    }
}

pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<LinkQuery>,
) -> Response {
    if let Err(r) = check_link(&state, &id, &q) {
        return r.into_response();
    }
    api::stream_run(&state, &headers, &id).await
}

const PAGE_STYLE: &str = "#head{border-bottom:1px solid #d1d9e0;padding-bottom:.5rem;margin-bottom:1rem}\
#status{display:inline-block;padding:0 .5rem;border-radius:1rem;background:#ddf4ff;font-size:.85rem}\
#status.succeeded,#status.answered{background:#dafbe1}#status.failed,#status.cancelled{background:#ffebe9}\
#bar{height:4px;background:#eee;border-radius:2px;margin:.5rem 0}#bar>div{height:4px;width:0;background:#0969da;border-radius:2px;transition:width .3s}\
.event{margin:.35rem 0}.phase{color:#59636e}.phase b{color:#1f2328}.msg{white-space:pre-wrap;border-left:3px solid #8250df;padding-left:.6rem}\
details.tool summary{cursor:pointer;font:13px ui-monospace,monospace}.exit{padding:0 .3rem;border-radius:4px;background:#eee}.exit.bad{background:#ffebe9}\
.err{color:#cf222e}.pr a{font-weight:600}.done{border-top:1px solid #d1d9e0;padding-top:.5rem}#totals{color:#59636e}";

const PAGE_SCRIPT: &str = r#"(function () {
  var log = document.getElementById('log'), status = document.getElementById('status');
  var totals = document.getElementById('totals'), bar = document.querySelector('#bar > div');
  var seen = {}, done = false;
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function add(seq, node) {
    node.classList.add('event');
    node.setAttribute('data-type', node.getAttribute('data-type') || '');
    if (seq) node.setAttribute('data-seq', seq);
    var atEnd = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    log.appendChild(node);
    if (atEnd) window.scrollTo(0, document.body.scrollHeight);
  }
  function short(s, n) { s = String(s); return s.length > n ? s.slice(0, n) + '…' : s; }
  function toolLabel(ev) {
    var i = ev.input || {};
    if (typeof i.path === 'string') return (i.command || '') + ' ' + i.path;
    if (typeof i.command === 'string') return i.command;
    return JSON.stringify(i);
  }
  function tokens(u) {
    if (!u) return '';
    var input = (u.input_tokens || 0) + (u.cache_creation_input_tokens || 0) + (u.cache_read_input_tokens || 0);
    return input + ' input / ' + (u.output_tokens || 0) + ' output tokens';
  }
  function render(seq, ev) {
    var n;
    switch (ev.type) {
      case 'start':
        n = el('div', 'phase', 'Run started');
        break;
      case 'progress':
        n = el('div', 'phase');
        n.appendChild(el('b', null, ev.stage));
        n.appendChild(document.createTextNode(' ' + (ev.message || '')));
        if (typeof ev.percentage === 'number') bar.style.width = Math.max(0, Math.min(100, ev.percentage)) + '%';
        status.textContent = ev.stage;
        if (ev.usage) totals.textContent = tokens(ev.usage) + (typeof ev.cost_usd === 'number' ? ' · $' + ev.cost_usd.toFixed(4) : '');
        break;
      case 'tool':
        n = el('details', 'tool');
        var s = el('summary', null, (ev.name || 'tool') + ': ' + short(toolLabel(ev), 160) + ' ');
        if (typeof ev.exit_code === 'number') s.appendChild(el('span', ev.exit_code === 0 ? 'exit' : 'exit bad', 'exit ' + ev.exit_code));
        n.appendChild(s);
        n.appendChild(el('pre', null, ev.output || '(no output)'));
        break;
      case 'ai_message':
        n = el('div', 'msg', ev.text);
        break;
      case 'pr_created':
        n = el('div', 'pr', 'Pull request: ');
        var url = String(ev.pr_url || '');
        if (/^https?:\/\//.test(url)) { var a = el('a', null, url); a.href = url; n.appendChild(a); }
        else n.appendChild(document.createTextNode(url));
        if (ev.files_changed && ev.files_changed.length) n.appendChild(el('div', 'muted', 'Files: ' + ev.files_changed.join(', ')));
        break;
      case 'error':
        n = el('div', 'err', 'Error: ' + ev.message);
        break;
      case 'egress_blocked':
        n = el('div', 'err', 'Network blocked: ' + ev.host + ':' + ev.port + ' (' + ev.count + '×)' + (ev.command ? ' by ' + short(ev.command, 160) : ''));
        n.appendChild(el('div', 'muted', ev.reason));
        if (ev.suggested_allow && ev.suggested_allow.length) {
          n.appendChild(el('div', 'muted', 'To allow it, .github/backspace.yml would say:'));
          n.appendChild(el('pre', null, 'network:\n  allow:\n' + ev.suggested_allow.map(function (e) { return '    - ' + (/^[*\[]/.test(e) ? '"' + e + '"' : e); }).join('\n')));
        }
        if (ev.operator_change) n.appendChild(el('div', 'muted', ev.operator_change));
        break;
      case 'complete':
        done = true;
        bar.style.width = '100%';
        status.textContent = ev.status;
        status.className = ev.status;
        var t = tokens(ev.usage) + ' · $' + Number(ev.cost_usd || 0).toFixed(4) + ' · ' + (Number(ev.duration_ms || 0) / 1000).toFixed(1) + ' s';
        totals.textContent = t;
        n = el('div', 'done', 'Finished: ' + ev.status + ' · ' + t);
        if (source) source.close();
        break;
      default:
        n = el('div', 'phase', JSON.stringify(ev));
    }
    n.setAttribute('data-type', ev.type);
    add(seq, n);
  }
  var source = new EventSource(document.body.getAttribute('data-events'));
  source.onmessage = function (m) {
    if (m.lastEventId) { if (seen[m.lastEventId]) return; seen[m.lastEventId] = true; }
    var ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    render(m.lastEventId, ev);
  };
  source.onerror = function () {
    if (done) { source.close(); return; }
    if (source.readyState === 2) status.textContent = 'disconnected: reload the page';
  };
})();"#;

/// The page's policy: its own script (by hash) and style, the event stream from this server,
/// nothing else. A line of agent output that slipped into markup still could not run.
pub fn page_csp() -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let hash =
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(PAGE_SCRIPT.as_bytes()));
    format!(
        "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
         connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

/// Pure: the page of a run; `events_url` is the signed stream it listens to.
pub fn render_page(job: &Job, events_url: &str) -> String {
    let prompt: String = job.prompt.chars().take(2000).collect();
    let target = match job.number {
        Some(n) => format!("{}#{n}", job.repository),
        None => job.repository.clone(),
    };
    let body = format!(
        "<div id=\"head\"><h1>Backspace run on {target}</h1>\
<p><span id=\"status\">{state}</span> <span id=\"totals\"></span></p>\
<p class=\"muted\">Asked by {requester}:</p><pre id=\"prompt\">{prompt}</pre>\
<div id=\"bar\"><div></div></div></div>\
<div id=\"log\" aria-live=\"polite\"></div>\
<script>{PAGE_SCRIPT}</script>",
        target = escape(&target),
        state = escape(job.state.as_str()),
        requester = escape(&job.requester),
        prompt = escape(&prompt),
    );
    html::page(&format!("Backspace run {}", job.id), PAGE_STYLE, &body).replacen(
        "<body>",
        &format!("<body data-events=\"{}\">", escape(events_url)),
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{AgentSpec, JobSource, JobSpec, JobState};

    fn job(prompt: &str) -> Job {
        Job {
            id: "abc".into(),
            spec: JobSpec::Run(AgentSpec::default()),
            source: JobSource::Api,
            state: JobState::Queued,
            installation_id: None,
            repository: "o/r".into(),
            clone_url: None,
            default_branch: None,
            number: Some(4),
            is_pull_request: false,
            comment_id: None,
            requester: "api".into(),
            prompt: prompt.into(),
            attempts: 0,
            lease_owner: None,
            lease_expires_at: None,
            cancel_requested: false,
            result: None,
            created_at: 0,
            started_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn the_page_escapes_the_prompt_and_points_at_the_signed_stream() {
        let page = render_page(
            &job("</pre><script>alert(1)</script>"),
            "/runs/abc/events?exp=1&sig=ff",
        );
        assert!(!page.contains("<script>alert(1)"));
        assert!(page.contains("&lt;/pre&gt;&lt;script&gt;"));
        assert!(page.contains("data-events=\"/runs/abc/events?exp=1&amp;sig=ff\""));
        assert!(page.contains("o/r#4"));
        assert!(!page.contains("src=\"http"), "no external assets");
    }
}
