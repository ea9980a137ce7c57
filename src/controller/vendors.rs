//! Builds a [`VendorClient`] from an OtaProvider and its Secrets, and caches it per provider so
//! tokens, sessions and the rate limiter are shared by every package and campaign of an account.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::{Api, ResourceExt};
use sha2::{Digest, Sha256};

use super::error::ControllerError;
use crate::api::{IotdaSigningAlgorithm, OtaProvider, OtaProviderSpec};
use crate::vendor::{
    CallObserver, HttpPolicy, RateLimitConfig, Secret, VendorClient,
    iotaap::{IotaapClient, IotaapConfig},
    iotda::{IamLogin, IotdaClient, IotdaConfig, SigningChoice},
    obs::{DEFAULT_PART_SIZE, ObsClient, ObsConfig},
    thingspace::{ThingSpaceClient, ThingSpaceConfig},
};

/// Keys of one Secret, values kept as [`Secret`] so they never print.
#[derive(Default)]
pub struct SecretData {
    name: String,
    values: BTreeMap<String, Secret>,
}

impl SecretData {
    /// The value of `key`, or an error naming the Secret and the key (never a value).
    pub fn require(&self, key: &str) -> Result<Secret, ControllerError> {
        self.values.get(key).cloned().ok_or_else(|| {
            ControllerError::Credentials(format!("Secret {} has no key {key:?}", self.name))
        })
    }

    /// Every key and value, for artifact request headers.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &Secret)> {
        self.values.iter().map(|(key, value)| (key.as_str(), value))
    }

    fn fingerprint_into(&self, hasher: &mut Sha256) {
        hasher.update(self.name.as_bytes());
        for (key, value) in &self.values {
            hasher.update(key.as_bytes());
            hasher.update([0]);
            hasher.update(value.expose().as_bytes());
            hasher.update([0]);
        }
    }
}

/// Reads Secret `name` in `namespace`. A missing Secret is a [`ControllerError::Credentials`]
/// error (the Secret watch re-queues the object when it appears).
pub async fn read_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<SecretData, ControllerError> {
    let api: Api<KubeSecret> = Api::namespaced(client.clone(), namespace);
    let secret = api.get_opt(name).await?.ok_or_else(|| {
        ControllerError::Credentials(format!("Secret {name} not found in namespace {namespace}"))
    })?;
    let mut values = BTreeMap::new();
    for (key, value) in secret.data.unwrap_or_default() {
        let text = String::from_utf8(value.0).map_err(|_| {
            ControllerError::Credentials(format!("Secret {name} key {key:?} is not UTF-8 text"))
        })?;
        values.insert(key, Secret::new(text.trim_end_matches(['\r', '\n'])));
    }
    Ok(SecretData {
        name: name.to_string(),
        values,
    })
}

/// The Secret names an OtaProvider reads, for the Secret watch.
pub fn referenced_secrets(spec: &OtaProviderSpec) -> Vec<&str> {
    let mut names = Vec::new();
    if let Some(ts) = &spec.thingspace {
        names.push(ts.credentials_ref.name.as_str());
    }
    if let Some(iotda) = &spec.iotda {
        names.push(iotda.credentials_ref.name.as_str());
        if let Some(obs) = &iotda.obs.credentials_ref {
            names.push(obs.name.as_str());
        }
    }
    if let Some(iotaap) = &spec.iotaap {
        names.push(iotaap.credentials_ref.name.as_str());
    }
    names
}

/// Vendor clients by provider, rebuilt only when the provider's spec or Secrets change.
pub struct VendorClients {
    policy: HttpPolicy,
    observer: Arc<dyn CallObserver>,
    cache: Mutex<HashMap<(String, String), (String, VendorClient)>>,
}

impl VendorClients {
    /// An empty cache whose clients use `policy` and report calls to `observer`.
    pub fn new(policy: HttpPolicy, observer: Arc<dyn CallObserver>) -> Self {
        Self {
            policy,
            observer,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The client of `provider`: the cached one when neither the spec nor a Secret changed
    /// (so a rejected ThingSpace login stays rejected until the Secret changes), a new one
    /// otherwise.
    pub async fn client_for(
        &self,
        kube: &kube::Client,
        provider: &OtaProvider,
    ) -> Result<VendorClient, ControllerError> {
        let namespace = provider
            .namespace()
            .ok_or(ControllerError::MissingMetadata("namespace"))?;
        let mut secrets = Vec::new();
        for name in referenced_secrets(&provider.spec) {
            secrets.push(read_secret(kube, &namespace, name).await?);
        }
        let mut hasher = Sha256::new();
        hasher.update(serde_json::to_vec(&provider.spec).unwrap_or_default());
        for secret in &secrets {
            secret.fingerprint_into(&mut hasher);
        }
        let fingerprint = hex::encode(hasher.finalize());
        let key = (namespace, provider.name_any());
        if let Some((cached, client)) = self.cache.lock().expect("cache lock").get(&key)
            && *cached == fingerprint
        {
            return Ok(client.clone());
        }
        let client = build_client(&provider.spec, &secrets, &self.policy, &self.observer)?;
        self.cache
            .lock()
            .expect("cache lock")
            .insert(key, (fingerprint, client.clone()));
        Ok(client)
    }

    /// Forgets the client of a deleted provider.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.cache
            .lock()
            .expect("cache lock")
            .remove(&(namespace.to_string(), name.to_string()));
    }
}

fn find<'a>(secrets: &'a [SecretData], name: &str) -> &'a SecretData {
    secrets
        .iter()
        .find(|secret| secret.name == name)
        .expect("every referenced Secret was read")
}

fn rate_limit(spec: &OtaProviderSpec) -> Option<RateLimitConfig> {
    let limit = spec.rate_limit.as_ref()?;
    let per_second = NonZeroU32::new(u32::try_from(limit.requests_per_second).ok()?)?;
    let burst = limit
        .burst
        .and_then(|burst| u32::try_from(burst).ok())
        .and_then(NonZeroU32::new)
        .unwrap_or(per_second);
    Some(RateLimitConfig { per_second, burst })
}

fn is_ip_host(endpoint: &str) -> bool {
    url::Url::parse(endpoint)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .is_some_and(|host| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok()
        })
}

fn build_client(
    spec: &OtaProviderSpec,
    secrets: &[SecretData],
    policy: &HttpPolicy,
    observer: &Arc<dyn CallObserver>,
) -> Result<VendorClient, ControllerError> {
    let limit = rate_limit(spec);
    if let Some(ts) = &spec.thingspace {
        let secret = find(secrets, &ts.credentials_ref.name);
        let config = ThingSpaceConfig {
            base_url: ts.base_url().trim_end_matches('/').to_string(),
            account_name: ts.account_name.clone(),
            app_key: secret.require("appKey")?,
            app_secret: secret.require("appSecret")?,
            username: secret.require("username")?.expose().to_string(),
            password: secret.require("password")?,
        };
        let client =
            ThingSpaceClient::new(config, policy.clone(), limit)?.with_observer(observer.clone());
        return Ok(VendorClient::ThingSpace(client));
    }
    if let Some(iotda) = &spec.iotda {
        let secret = find(secrets, &iotda.credentials_ref.name);
        let obs_secret = iotda
            .obs
            .credentials_ref
            .as_ref()
            .map(|reference| find(secrets, &reference.name));
        let (obs_key_id, obs_key) = match (obs_secret, &iotda.iam) {
            (Some(obs), _) => (obs.require("accessKeyId")?, obs.require("secretAccessKey")?),
            (None, None) => (
                secret.require("accessKeyId")?,
                secret.require("secretAccessKey")?,
            ),
            (None, Some(_)) => {
                return Err(ControllerError::InvalidSpec {
                    reason: "ObsCredentialsRequired",
                    message: "spec.iotda.obs.credentialsRef is required with spec.iotda.iam: \
                              OBS uploads are signed with an access key, not an IAM token"
                        .into(),
                });
            }
        };
        let iam = match &iotda.iam {
            Some(iam) => Some(IamLogin {
                endpoint: iam
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| format!("https://iam.{}.myhuaweicloud.com", iotda.region)),
                domain: iam.domain_name.clone(),
                user: secret.require("username")?.expose().to_string(),
                password: secret.require("password")?,
            }),
            None => None,
        };
        let (access_key_id, secret_access_key) = if iam.is_some() {
            (obs_key_id.clone(), obs_key.clone())
        } else {
            (
                secret.require("accessKeyId")?,
                secret.require("secretAccessKey")?,
            )
        };
        let obs = ObsClient::new(
            ObsConfig {
                endpoint: iotda.obs.endpoint.trim_end_matches('/').to_string(),
                region: iotda
                    .obs
                    .region
                    .clone()
                    .unwrap_or_else(|| iotda.region.clone()),
                bucket: iotda.obs.bucket.clone(),
                path_style: iotda
                    .obs
                    .path_style
                    .unwrap_or_else(|| is_ip_host(&iotda.obs.endpoint)),
                access_key_id: obs_key_id.expose().to_string(),
                secret_access_key: obs_key,
                part_size: iotda
                    .obs
                    .part_size_mib
                    .and_then(|mib| u64::try_from(mib).ok())
                    .filter(|mib| *mib > 0)
                    .map_or(DEFAULT_PART_SIZE, |mib| mib << 20),
            },
            policy.clone(),
            limit,
        )?;
        let signing = match iotda.signing_algorithm {
            None => SigningChoice::Automatic,
            Some(IotdaSigningAlgorithm::SdkHmacSha256) => SigningChoice::Standard,
            Some(IotdaSigningAlgorithm::V11HmacSha256) => SigningChoice::Derived,
        };
        let client = IotdaClient::new(
            IotdaConfig {
                endpoint: iotda.endpoint.trim_end_matches('/').to_string(),
                project_id: iotda.project_id.clone(),
                instance_id: iotda.instance_id.clone(),
                region: iotda.region.clone(),
                signing,
                access_key_id: access_key_id.expose().to_string(),
                secret_access_key,
                key_prefix: iotda.obs.key_prefix.clone().unwrap_or_default(),
                iam,
            },
            obs,
            policy.clone(),
            limit,
        )?
        .with_observer(observer.clone());
        return Ok(VendorClient::Iotda(Box::new(client)));
    }
    if let Some(iotaap) = &spec.iotaap {
        let secret = find(secrets, &iotaap.credentials_ref.name);
        let client = IotaapClient::new(
            IotaapConfig {
                base_url: iotaap.base_url().trim_end_matches('/').to_string(),
                device_url: iotaap.device_url().trim_end_matches('/').to_string(),
                email: secret.require("email")?.expose().to_string(),
                password: secret.require("password")?,
                deploy_concurrency: usize::try_from(iotaap.deploy_concurrency()).unwrap_or(4),
            },
            policy.clone(),
            limit,
        )?
        .with_observer(observer.clone());
        return Ok(VendorClient::Iotaap(client));
    }
    Err(ControllerError::InvalidSpec {
        reason: "InvalidProvider",
        message: "exactly one of spec.thingspace, spec.iotda and spec.iotaap must be set".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_burst_defaults_to_the_rate() {
        let spec = OtaProviderSpec {
            rate_limit: Some(crate::api::RateLimit {
                requests_per_second: 7,
                burst: None,
            }),
            ..OtaProviderSpec::default()
        };
        let limit = rate_limit(&spec).expect("a limit");
        assert_eq!((limit.per_second.get(), limit.burst.get()), (7, 7));
        assert!(rate_limit(&OtaProviderSpec::default()).is_none());
    }

    #[test]
    fn ip_endpoints_use_path_style() {
        assert!(is_ip_host("http://127.0.0.1:9000"));
        assert!(is_ip_host("http://[::1]:9000"));
        assert!(!is_ip_host("https://obs.cn-north-4.myhuaweicloud.com"));
    }

    #[test]
    fn missing_keys_name_the_secret_and_key_only() {
        let data = SecretData {
            name: "creds".into(),
            values: BTreeMap::from([("appKey".to_string(), Secret::new("s3cr3t"))]),
        };
        let err = data.require("password").expect_err("missing key");
        assert_eq!(err.to_string(), "Secret creds has no key \"password\"");
        assert!(!err.is_retryable());
    }
}
