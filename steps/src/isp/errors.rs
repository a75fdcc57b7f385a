//! How domain errors reach the engine: which are worth a retry.

use sagaflow_engine::handler::StepError;

use crate::ipam::IpamError;
use crate::lifecycle::repo::LifecycleError;
use crate::subscriber::SubscriberError;

impl From<LifecycleError> for StepError {
    fn from(e: LifecycleError) -> Self {
        let kind = match &e {
            LifecycleError::Invalid(_) => "invalid_transition",
            LifecycleError::NotFound(_) => "not_found",
            LifecycleError::AddressTaken { .. } => "address_taken",
            LifecycleError::Corrupt(_) => "corrupt",
            LifecycleError::Contention | LifecycleError::Database(_) => {
                return StepError::retryable("database", e.to_string());
            }
        };
        StepError::fatal(kind, e.to_string())
    }
}

impl From<IpamError> for StepError {
    fn from(e: IpamError) -> Self {
        let kind = match e {
            IpamError::Lifecycle(l) => return l.into(),
            IpamError::Database(_) => return StepError::retryable("database", e.to_string()),
            IpamError::UnknownPool { .. } | IpamError::NoPool { .. } => "no_pool",
            IpamError::Exhausted { .. } => "pool_exhausted",
            IpamError::InvalidPool { .. } | IpamError::PoolChanged { .. } => "invalid_pool",
            IpamError::Corrupt(_) => "corrupt",
        };
        StepError::fatal(kind, e.to_string())
    }
}

impl From<SubscriberError> for StepError {
    fn from(e: SubscriberError) -> Self {
        let kind = match &e {
            SubscriberError::Exists(..) => "subscriber_exists",
            SubscriberError::ProfileExists(..) => "profile_exists",
            SubscriberError::Corrupt(_) => "corrupt",
            SubscriberError::Database(_) => {
                return StepError::retryable("database", e.to_string());
            }
        };
        StepError::fatal(kind, e.to_string())
    }
}
