//! `api: 'graph'`: Microsoft Graph's sendMail instead of SMTP (`graphUrl`,
//! `saveToSentItems`, the Graph endpoints of each cloud).

use super::oauth2::is_loopback;
use crate::error::Result;
use crate::input::Field;

/// `api: 'graph'`: where Microsoft Graph is and what sendMail is asked to do.
#[derive(Debug, Clone)]
pub struct GraphOptions {
    /// The API root, `https://graph.microsoft.com/v1.0` or the cloud's (`graphUrl`).
    pub base_url: reqwest::Url,
    /// `saveToSentItems` (Graph's default: true).
    pub save_to_sent_items: bool,
}

/// Microsoft Graph in each cloud (`api: 'graph'`): the token scope and the API root
/// (learn.microsoft.com, "National cloud deployments").
const GRAPH_CLOUDS: [(&str, &str, &str); 3] = [
    (
        "global",
        "https://graph.microsoft.com/.default",
        "https://graph.microsoft.com/v1.0",
    ),
    (
        "usgov",
        "https://graph.microsoft.us/.default",
        "https://graph.microsoft.us/v1.0",
    ),
    (
        "china",
        "https://microsoftgraph.chinacloudapi.cn/.default",
        "https://microsoftgraph.chinacloudapi.cn/v1.0",
    ),
];

/// The Graph scope and API root of `oauth2.cloud` (global when absent or an authority URL).
pub(super) fn graph_cloud(oauth2: &Field) -> Result<(&'static str, &'static str)> {
    let name = oauth2.child("cloud").optional_string()?.unwrap_or("global");
    let (_, scope, url) = GRAPH_CLOUDS
        .iter()
        .find(|(cloud, _, _)| cloud.eq_ignore_ascii_case(name))
        .unwrap_or(&GRAPH_CLOUDS[0]);
    Ok((scope, url))
}

/// `api` (`'smtp'`, the default, or `'graph'`), `graphUrl` and `saveToSentItems`.
pub(super) fn parse_graph(root: &Field) -> Result<Option<GraphOptions>> {
    let api = root.child("api");
    match api.optional_string()?.map(str::trim) {
        None => {}
        Some(name) if name.eq_ignore_ascii_case("smtp") => {}
        Some(name) if name.eq_ignore_ascii_case("graph") => {}
        Some(_) => return Err(api.wrong_type("'smtp' or 'graph'")),
    }
    let is_graph = api
        .optional_string()?
        .is_some_and(|name| name.trim().eq_ignore_ascii_case("graph"));
    let url_field = root.child("graphUrl");
    let save_field = root.child("saveToSentItems");
    if !is_graph {
        for field in [&url_field, &save_field] {
            if field.is_present() {
                return Err(field.error("is only used with api: 'graph'"));
            }
        }
        return Ok(None);
    }
    let base_url = match url_field.optional_string()? {
        Some(text) => {
            let url = reqwest::Url::parse(text.trim()).map_err(|err| {
                url_field.error(format!(
                    "must be the Graph API root such as https://graph.microsoft.com/v1.0, got {text:?} ({err})"
                ))
            })?;
            match url.scheme() {
                "https" => url,
                "http" if is_loopback(&url) => url,
                _ => {
                    return Err(url_field.error(format!(
                        "must be an https:// URL (the access token must not travel unencrypted), got {text:?}"
                    )))
                }
            }
        }
        None => reqwest::Url::parse(graph_cloud(&root.child("oauth2"))?.1)
            .expect("the cloud table holds valid URLs"),
    };
    Ok(Some(GraphOptions {
        base_url,
        save_to_sent_items: save_field.optional_bool()?.unwrap_or(true),
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;
    use crate::config::*;

    fn graph_config() -> Value {
        let config = without(&without(&tas_config(), &["host"]), &["port"]);
        let config = without(&config, &["oauth2", "scope"]);
        set(&config, &["api"], Value::str("graph"))
    }

    #[test]
    fn api_graph_needs_no_host_and_defaults_to_the_clouds_graph() {
        let parsed = TransportConfig::from_value(&graph_config(), None).unwrap();
        let graph = parsed.graph.as_ref().unwrap();
        assert_eq!(graph.base_url.as_str(), "https://graph.microsoft.com/v1.0");
        assert!(graph.save_to_sent_items);
        assert_eq!(
            oauth2_of(&graph_config()).scope,
            "https://graph.microsoft.com/.default"
        );
        let usgov = set(&graph_config(), &["oauth2", "cloud"], Value::str("usgov"));
        let parsed = TransportConfig::from_value(&usgov, None).unwrap();
        assert_eq!(
            parsed.graph.unwrap().base_url.as_str(),
            "https://graph.microsoft.us/v1.0"
        );
        assert_eq!(oauth2_of(&usgov).scope, "https://graph.microsoft.us/.default");
        let china = set(&graph_config(), &["oauth2", "cloud"], Value::str("china"));
        assert_eq!(
            oauth2_of(&china).scope,
            "https://microsoftgraph.chinacloudapi.cn/.default"
        );
        assert!(TransportConfig::from_value(&tas_config(), None)
            .unwrap()
            .graph
            .is_none());
    }

    #[test]
    fn graph_options_are_checked() {
        let pooled = set(&graph_config(), &["pool"], Value::Bool(true));
        let pooled = set(&pooled, &["maxConnections"], Value::Number(10.0));
        let parsed = TransportConfig::from_value(&pooled, None).unwrap();
        assert_eq!(
            parsed.pool.unwrap().max_connections,
            4,
            "Outlook's 4 concurrent requests"
        );
        let default_pool = set(&graph_config(), &["pool"], Value::Bool(true));
        assert_eq!(
            TransportConfig::from_value(&default_pool, None)
                .unwrap()
                .pool
                .unwrap()
                .max_connections,
            4
        );
        let no_copy = set(&graph_config(), &["saveToSentItems"], Value::Bool(false));
        assert!(
            !TransportConfig::from_value(&no_copy, None)
                .unwrap()
                .graph
                .unwrap()
                .save_to_sent_items
        );
        for (path, value, expected) in [
            (
                "api",
                Value::str("rest"),
                "mail.smtp.api must be 'smtp' or 'graph'",
            ),
            (
                "graphUrl",
                Value::str("http://graph.example.com/v1.0"),
                "mail.smtp.graphUrl must be an https:// URL",
            ),
            (
                "graphUrl",
                Value::str("not a url"),
                "mail.smtp.graphUrl must be the Graph API root",
            ),
            (
                "saveToSentItems",
                Value::str("no"),
                "mail.smtp.saveToSentItems must be",
            ),
        ] {
            let message = error_of(&set(&graph_config(), &[path], value));
            assert!(message.starts_with(expected), "{message}");
        }
        let local = set(
            &graph_config(),
            &["graphUrl"],
            Value::str("http://127.0.0.1:8080/v1.0"),
        );
        assert!(TransportConfig::from_value(&local, None).is_ok());
        let smtp_with_graph_url = set(
            &tas_config(),
            &["graphUrl"],
            Value::str("https://graph.microsoft.com/v1.0"),
        );
        assert_eq!(
            error_of(&smtp_with_graph_url),
            "mail.smtp.graphUrl is only used with api: 'graph'"
        );
        let basic = without(&without(&graph_config(), &["type"]), &["oauth2"]);
        let basic = set(&basic, &["auth", "pass"], Value::str("pw"));
        assert!(error_of(&basic).starts_with("mail.smtp.type must be 'oauth2' with api: 'graph'"));
    }
}
