//! Who owns runs and connections: a user, within a tenant when the identity carries one. Every
//! key of an owner's items is derived from it, so two tenants' users who share an id share
//! nothing; without a tenant every key is exactly what it was before tenants were kept apart.

use std::borrow::Cow;

/// The owner of runs and connections: `user_id`, within `tenant_id` when there is one. Both
/// passed the one id rule, so neither contains `#`, which the keys use as a separator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Owner<'a> {
    pub user_id: &'a str,
    pub tenant_id: Option<&'a str>,
}

impl<'a> Owner<'a> {
    /// `user_id` within `tenant_id`.
    pub fn new(user_id: &'a str, tenant_id: Option<&'a str>) -> Self {
        Owner { user_id, tenant_id }
    }

    /// A user of no tenant (single-tenant deployments).
    pub fn user(user_id: &'a str) -> Self {
        Owner::new(user_id, None)
    }

    /// The owner as one string: the bare user id without a tenant (what every key held
    /// before tenants), else `TENANT#{tenant}#USER#{user}` (a `#` is never in an id, so it
    /// never equals a bare user id, nor another tenant's owner). The embedded and memory
    /// stores key an owner's items by it, run ids are derived from it, and with a tenant it is
    /// also the DynamoDB partition key.
    pub fn key(self) -> Cow<'a, str> {
        match self.tenant_id {
            None => Cow::Borrowed(self.user_id),
            Some(t) => Cow::Owned(format!("TENANT#{t}#USER#{}", self.user_id)),
        }
    }
}

impl<'a> From<&'a str> for Owner<'a> {
    fn from(user_id: &'a str) -> Self {
        Owner::user(user_id)
    }
}

impl<'a> From<&'a String> for Owner<'a> {
    fn from(user_id: &'a String) -> Self {
        Owner::user(user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a tenant the key is the bare user id; with one it can equal neither a bare user
    /// id nor the same user in another tenant.
    #[test]
    fn keys_keep_tenants_apart_and_single_tenants_unchanged() {
        assert_eq!(Owner::user("carol").key(), "carol");
        let a = Owner::new("carol", Some("acme"));
        let b = Owner::new("carol", Some("globex"));
        assert_eq!(a.key(), "TENANT#acme#USER#carol");
        assert_ne!(a.key(), b.key());
        assert_ne!(a.key(), Owner::user("carol").key());
    }
}
