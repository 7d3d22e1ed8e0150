//! One Prometheus HTTP API: `POST {url}/api/v1/query` and `/api/v1/query_range`, with the
//! data source's headers, basic auth and timeout, and the JSON answers decoded into series.

use super::{DatasourceError, Series};
use crate::config::Datasource;
use crate::model::Tags;
use serde::Deserialize;
use std::time::Duration;

/// A client for one `[[datasources]]` entry.
#[derive(Debug, Clone)]
pub struct Client {
    id: String,
    base: String,
    headers: Vec<(String, String)>,
    agent: ureq::Agent,
}

/// The API's answer envelope.
#[derive(Deserialize)]
struct Answer {
    status: String,
    data: Option<Data>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<VectorItem>),
    Matrix(Vec<MatrixItem>),
    Scalar(SampleValue),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct VectorItem {
    #[serde(default)]
    metric: Tags,
    value: SampleValue,
}

#[derive(Deserialize)]
struct MatrixItem {
    #[serde(default)]
    metric: Tags,
    #[serde(default)]
    values: Vec<SampleValue>,
}

/// `[<unix seconds, maybe fractional>, "<value>"]`.
#[derive(Deserialize)]
struct SampleValue(f64, String);

impl SampleValue {
    fn get(&self, id: &str) -> Result<(i64, f64), DatasourceError> {
        let v: f64 = self.1.parse().map_err(|_| DatasourceError::Decode {
            id: id.to_string(),
            message: format!("sample value {:?} is not a number", self.1),
        })?;
        // Checks run on whole seconds, so evaluation times are whole seconds too.
        Ok((self.0.round() as i64, v))
    }
}

/// The labels of a result series without `__name__`: the object's dimension tags.
fn dimension_tags(mut metric: Tags) -> Tags {
    metric.remove("__name__");
    metric
}

impl Client {
    /// A client for `ds`.
    pub fn new(ds: &Datasource) -> Client {
        let mut headers: Vec<(String, String)> = ds
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(b) = &ds.basic_auth {
            use base64::Engine as _;
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", b.user, b.password));
            headers.push(("Authorization".into(), format!("Basic {token}")));
        }
        let timeout = Duration::from_secs(ds.timeout.get().max(1) as u64);
        Client {
            id: ds.id.clone(),
            base: ds.url.0.trim_end_matches('/').to_string(),
            headers,
            agent: ureq::AgentBuilder::new().timeout(timeout).build(),
        }
    }

    /// The data source's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The expression's value at `at` (Unix s): one series per result element, each with one
    /// point. `step` (when the monitor has a fixed period) is passed along so that stores which
    /// use it as the default lookback (VictoriaMetrics) answer as their range queries do.
    pub fn instant(
        &self,
        promql: &str,
        at: i64,
        step: Option<i64>,
    ) -> Result<Vec<Series>, DatasourceError> {
        let at_s = at.to_string();
        let step_s = step.map(|s| s.to_string());
        let mut form: Vec<(&str, &str)> = vec![("query", promql), ("time", &at_s)];
        if let Some(s) = &step_s {
            form.push(("step", s));
        }
        self.call("query", &form)
    }

    /// The expression at `start`, `start + step`, ... up to `end` (Unix s), as series with
    /// their points.
    pub fn range(
        &self,
        promql: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Vec<Series>, DatasourceError> {
        let (start_s, end_s, step_s) = (start.to_string(), end.to_string(), step.to_string());
        // nocache: VictoriaMetrics would otherwise align start to its cache buckets.
        let form = [
            ("query", promql),
            ("start", start_s.as_str()),
            ("end", end_s.as_str()),
            ("step", step_s.as_str()),
            ("nocache", "1"),
        ];
        self.call("query_range", &form)
    }

    fn call(&self, endpoint: &str, form: &[(&str, &str)]) -> Result<Vec<Series>, DatasourceError> {
        let url = format!("{}/api/v1/{endpoint}", self.base);
        let mut req = self.agent.post(&url);
        for (k, v) in &self.headers {
            req = req.set(k, v);
        }
        let resp = match req.send_form(form) {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let body = r.into_string().unwrap_or_default();
                // Prometheus explains a bad query in the JSON body of a 400/422.
                let message = serde_json::from_str::<Answer>(&body)
                    .ok()
                    .and_then(|a| a.error)
                    .unwrap_or_else(|| body.chars().take(300).collect());
                return Err(DatasourceError::Status {
                    id: self.id.clone(),
                    url,
                    code,
                    message,
                });
            }
            Err(e) => {
                return Err(DatasourceError::Unreachable {
                    id: self.id.clone(),
                    url,
                    message: e.to_string(),
                })
            }
        };
        let answer: Answer = resp.into_json().map_err(|e| DatasourceError::Decode {
            id: self.id.clone(),
            message: format!("{url}: {e}"),
        })?;
        if answer.status != "success" {
            return Err(DatasourceError::Query {
                id: self.id.clone(),
                kind: answer.error_type.unwrap_or_default(),
                message: answer.error.unwrap_or_default(),
            });
        }
        self.series(answer.data)
    }

    fn series(&self, data: Option<Data>) -> Result<Vec<Series>, DatasourceError> {
        let id = &self.id;
        match data {
            None => Ok(vec![]),
            Some(Data::Vector(items)) => items
                .into_iter()
                .map(|i| {
                    Ok(Series {
                        tags: dimension_tags(i.metric),
                        points: vec![i.value.get(id)?],
                    })
                })
                .collect(),
            Some(Data::Matrix(items)) => items
                .into_iter()
                .map(|i| {
                    let points = i
                        .values
                        .iter()
                        .map(|v| v.get(id))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(Series {
                        tags: dimension_tags(i.metric),
                        points,
                    })
                })
                .collect(),
            // A scalar is one object without tags.
            Some(Data::Scalar(v)) => Ok(vec![Series {
                tags: Tags::new(),
                points: vec![v.get(id)?],
            }]),
            Some(Data::String(_)) => Err(DatasourceError::Decode {
                id: id.clone(),
                message: "the expression gives a string, not numbers".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        let ds: Datasource = toml::from_str("id = \"vm\"\nurl = \"http://127.0.0.1:1\"").unwrap();
        Client::new(&ds)
    }

    fn decode(json: &str) -> Result<Vec<Series>, DatasourceError> {
        let a: Answer = serde_json::from_str(json).unwrap();
        client().series(a.data)
    }

    #[test]
    fn vectors_drop_the_metric_name_and_keep_the_labels() {
        let s = decode(
            r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"cpu","host":"a"},"value":[1714558440,"97.5"]},
            {"metric":{"host":"b"},"value":[1714558440.000,"NaN"]}]}}"#,
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].tags, Tags::from([("host".into(), "a".into())]));
        assert_eq!(s[0].points, vec![(1714558440, 97.5)]);
        assert!(s[1].points[0].1.is_nan());
    }

    #[test]
    fn matrices_scalars_and_bad_values() {
        let s = decode(
            r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"host":"a"},"values":[[60,"1"],[120,"+Inf"]]}]}}"#,
        )
        .unwrap();
        assert_eq!(s[0].points, vec![(60, 1.0), (120, f64::INFINITY)]);
        let s = decode(r#"{"status":"success","data":{"resultType":"scalar","result":[60,"4"]}}"#)
            .unwrap();
        assert_eq!((s[0].tags.len(), s[0].points[0]), (0, (60, 4.0)));
        let e = decode(
            r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{},"value":[60,"x1"]}]}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"x1\" is not a number"), "{e}");
    }

    #[test]
    fn basic_auth_becomes_a_header_and_the_base_loses_its_slash() {
        let ds: Datasource = toml::from_str(
            "id = \"p\"\nurl = \"http://h:9090/\"\nbasic_auth = { user = \"u\", password = \"pw\" }",
        )
        .unwrap();
        let c = Client::new(&ds);
        assert_eq!(c.base, "http://h:9090");
        assert_eq!(
            c.headers,
            vec![("Authorization".to_string(), "Basic dTpwdw==".to_string())]
        );
        assert!(!format!("{ds:?}").contains("pw"));
    }
}
