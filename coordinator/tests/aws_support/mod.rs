//! Shared by the `aws_*` tests: a private moto server per test, AWS
//! configurations for it, and seeding helpers built on the AWS SDK.
//!
//! Every test starts its own `moto_server` on a free port ([`Moto::start`], the
//! testkit's server; the binary is `$SCANFLEET_MOTO_SERVER`, else `moto_server`
//! on the PATH): these tests create
//! an organization, switch on moto's IAM enforcement (`/moto-api/reset-auth`) and
//! depend on exact state, none of which may leak into a server other tests share.

#![allow(dead_code)]

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::Credentials;
use aws_sdk_ec2::types::{
    DomainType, Filter, IpPermission, IpRange, PortRange, ResourceType, RuleAction, Tag,
    TagSpecification,
};

pub const MANAGEMENT: &str = "123456789012";
/// The image every seeded instance runs.
pub const LINUX: &str = "ami-1e749f67";

/// A private moto server (the testkit's, started, killed and logged there)
/// that lives as long as this value, with AWS configurations for it.
pub struct Moto(scanfleet_testkit::Moto);

impl std::ops::Deref for Moto {
    type Target = scanfleet_testkit::Moto;

    fn deref(&self) -> &scanfleet_testkit::Moto {
        &self.0
    }
}

impl Moto {
    /// Start a private moto server and wait until it answers.
    pub fn start() -> Moto {
        Moto(scanfleet_testkit::Moto::start())
    }

    /// AWS configuration for this server with the given credentials and region.
    pub async fn sdk(&self, creds: Credentials, region: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .credentials_provider(creds)
            .region(Region::new(region.to_string()))
            .endpoint_url(&self.url)
            .http_client(scanfleet_common::aws::https_client())
            .load()
            .await
    }

    /// The default identity of moto (account 123456789012, no IAM checks).
    pub async fn root(&self, region: &str) -> SdkConfig {
        self.sdk(
            Credentials::new("testing", "testing", None, None, "test"),
            region,
        )
        .await
    }

    /// Credentials inside `account` (moto maps an assumed role's keys to the
    /// account named in the role ARN).
    pub async fn account(&self, account: &str, region: &str) -> SdkConfig {
        let sts = aws_sdk_sts::Client::new(&self.root(region).await);
        let c = sts
            .assume_role()
            .role_arn(format!(
                "arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
            ))
            .role_session_name("seed")
            .send()
            .await
            .expect("assume role for seeding");
        let c = c.credentials().expect("credentials");
        self.sdk(
            Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().into()),
                None,
                "seed",
            ),
            region,
        )
        .await
    }
}

/// An inbound ACL rule from 0.0.0.0/0: number, allow, protocol, ports.
pub type AclRule<'a> = (i32, bool, &'a str, Option<(i32, i32)>);

/// An EC2 seeding handle for one account-region.
pub struct Ec2(pub aws_sdk_ec2::Client);

pub fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

pub fn anywhere(proto: &str, from: i32, to: i32) -> IpPermission {
    IpPermission::builder()
        .ip_protocol(proto)
        .from_port(from)
        .to_port(to)
        .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .build()
}

pub fn from_cidr(proto: &str, from: i32, to: i32, cidr: &str) -> IpPermission {
    IpPermission::builder()
        .ip_protocol(proto)
        .from_port(from)
        .to_port(to)
        .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
        .build()
}

/// What to launch.
pub struct Launch<'a> {
    pub name: &'a str,
    pub instance_type: &'a str,
    pub image: &'a str,
    pub subnet: &'a str,
    pub ip: &'a str,
    pub groups: &'a [&'a str],
    pub tags: &'a [(&'a str, &'a str)],
}

impl<'a> Launch<'a> {
    /// A Linux m5.large without groups or tags.
    pub fn plain(name: &'a str, subnet: &'a str, ip: &'a str) -> Launch<'a> {
        Launch {
            name,
            instance_type: "m5.large",
            image: LINUX,
            subnet,
            ip,
            groups: &[],
            tags: &[],
        }
    }
}

impl Ec2 {
    pub async fn new(sdk: &SdkConfig) -> Ec2 {
        Ec2(aws_sdk_ec2::Client::new(sdk))
    }

    /// A VPC with one subnet; returns the subnet.
    pub async fn vpc_with_subnet(&self, vpc_cidr: &str, subnet_cidr: &str, az: &str) -> String {
        let vpc = self.vpc(vpc_cidr).await;
        self.subnet(&vpc, subnet_cidr, az).await
    }

    pub async fn vpc(&self, cidr: &str) -> String {
        let v = self
            .0
            .create_vpc()
            .cidr_block(cidr)
            .send()
            .await
            .expect("create vpc");
        v.vpc()
            .and_then(|v| v.vpc_id())
            .expect("vpc id")
            .to_string()
    }

    pub async fn subnet(&self, vpc: &str, cidr: &str, az: &str) -> String {
        let s = self
            .0
            .create_subnet()
            .vpc_id(vpc)
            .cidr_block(cidr)
            .availability_zone(az)
            .send()
            .await
            .expect("subnet");
        s.subnet()
            .and_then(|s| s.subnet_id())
            .expect("subnet id")
            .to_string()
    }

    /// An internet gateway on the VPC and a route table for `subnet` whose
    /// default route goes to it. Returns (igw, route table).
    pub async fn public_route(&self, vpc: &str, subnet: &str) -> (String, String) {
        let igw = self.0.create_internet_gateway().send().await.expect("igw");
        let igw = igw
            .internet_gateway()
            .and_then(|g| g.internet_gateway_id())
            .expect("igw id")
            .to_string();
        self.0
            .attach_internet_gateway()
            .internet_gateway_id(&igw)
            .vpc_id(vpc)
            .send()
            .await
            .expect("attach igw");
        let rt = self
            .0
            .create_route_table()
            .vpc_id(vpc)
            .send()
            .await
            .expect("route table");
        let rt = rt
            .route_table()
            .and_then(|r| r.route_table_id())
            .expect("rt id")
            .to_string();
        self.0
            .create_route()
            .route_table_id(&rt)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(&igw)
            .send()
            .await
            .expect("route");
        self.0
            .associate_route_table()
            .route_table_id(&rt)
            .subnet_id(subnet)
            .send()
            .await
            .expect("associate");
        (igw, rt)
    }

    /// Another subnet on an existing public route table.
    pub async fn associate(&self, rt: &str, subnet: &str) {
        self.0
            .associate_route_table()
            .route_table_id(rt)
            .subnet_id(subnet)
            .send()
            .await
            .expect("associate");
    }

    /// A network ACL for `subnet` with these inbound rules (number, allow,
    /// protocol, ports) from 0.0.0.0/0 and all traffic allowed outbound.
    pub async fn acl(&self, vpc: &str, subnet: &str, inbound: &[AclRule<'_>]) -> String {
        let acl = self
            .0
            .create_network_acl()
            .vpc_id(vpc)
            .send()
            .await
            .expect("acl");
        let acl = acl
            .network_acl()
            .and_then(|a| a.network_acl_id())
            .expect("acl id")
            .to_string();
        let entry = |n: i32, egress: bool, allow: bool, proto: &str, ports: Option<(i32, i32)>| {
            let mut b = self
                .0
                .create_network_acl_entry()
                .network_acl_id(&acl)
                .rule_number(n)
                .egress(egress)
                .protocol(proto)
                .rule_action(if allow {
                    RuleAction::Allow
                } else {
                    RuleAction::Deny
                })
                .cidr_block("0.0.0.0/0");
            if let Some((a, z)) = ports {
                b = b.port_range(PortRange::builder().from(a).to(z).build());
            }
            b
        };
        for &(n, allow, proto, ports) in inbound {
            entry(n, false, allow, proto, ports)
                .send()
                .await
                .expect("acl entry");
        }
        entry(100, true, true, "-1", None)
            .send()
            .await
            .expect("acl egress");
        let current = self
            .0
            .describe_network_acls()
            .filters(
                Filter::builder()
                    .name("association.subnet-id")
                    .values(subnet)
                    .build(),
            )
            .send()
            .await
            .expect("describe acls");
        let assoc = current
            .network_acls()
            .iter()
            .flat_map(|a| a.associations())
            .find(|a| a.subnet_id() == Some(subnet))
            .and_then(|a| a.network_acl_association_id())
            .expect("subnet acl association")
            .to_string();
        self.0
            .replace_network_acl_association()
            .association_id(assoc)
            .network_acl_id(&acl)
            .send()
            .await
            .expect("replace acl association");
        acl
    }

    pub async fn group(&self, vpc: &str, name: &str, rules: Vec<IpPermission>) -> String {
        let g = self
            .0
            .create_security_group()
            .vpc_id(vpc)
            .group_name(name)
            .description(name)
            .send()
            .await
            .expect("sg");
        let id = g.group_id().expect("sg id").to_string();
        if !rules.is_empty() {
            self.0
                .authorize_security_group_ingress()
                .group_id(&id)
                .set_ip_permissions(Some(rules))
                .send()
                .await
                .expect("ingress");
        }
        id
    }

    /// Launch one instance (one reservation) and return its id.
    pub async fn launch(&self, l: Launch<'_>) -> String {
        let mut tags = vec![tag("Name", l.name)];
        tags.extend(l.tags.iter().map(|(k, v)| tag(k, v)));
        let r = self
            .0
            .run_instances()
            .image_id(l.image)
            .instance_type(l.instance_type.into())
            .min_count(1)
            .max_count(1)
            .subnet_id(l.subnet)
            .private_ip_address(l.ip)
            .set_security_group_ids(Some(l.groups.iter().map(|s| s.to_string()).collect()))
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(tags))
                    .build(),
            )
            .send()
            .await
            .expect("run instance");
        r.instances()[0]
            .instance_id()
            .expect("instance id")
            .to_string()
    }

    pub async fn primary_eni(&self, instance: &str) -> String {
        let d = self
            .0
            .describe_instances()
            .instance_ids(instance)
            .send()
            .await
            .expect("describe");
        d.reservations()[0].instances()[0].network_interfaces()[0]
            .network_interface_id()
            .expect("eni")
            .to_string()
    }

    pub async fn secondary_ip(&self, instance: &str, ip: &str) {
        let eni = self.primary_eni(instance).await;
        self.0
            .assign_private_ip_addresses()
            .network_interface_id(eni)
            .private_ip_addresses(ip)
            .send()
            .await
            .expect("assign ip");
    }

    pub async fn second_eni(&self, instance: &str, subnet: &str, ip: &str, groups: &[&str]) {
        let n = self
            .0
            .create_network_interface()
            .subnet_id(subnet)
            .private_ip_address(ip)
            .set_groups(Some(groups.iter().map(|s| s.to_string()).collect()))
            .send()
            .await
            .expect("eni");
        let eni = n
            .network_interface()
            .and_then(|n| n.network_interface_id())
            .expect("eni id")
            .to_string();
        self.0
            .attach_network_interface()
            .network_interface_id(eni)
            .instance_id(instance)
            .device_index(1)
            .send()
            .await
            .expect("attach eni");
    }

    /// Allocate an Elastic IP onto the instance; returns the public address.
    pub async fn eip(&self, instance: &str) -> String {
        let a = self
            .0
            .allocate_address()
            .domain(DomainType::Vpc)
            .send()
            .await
            .expect("allocate");
        self.0
            .associate_address()
            .allocation_id(a.allocation_id().expect("allocation"))
            .instance_id(instance)
            .send()
            .await
            .expect("associate eip");
        a.public_ip().expect("public ip").to_string()
    }

    pub async fn stop(&self, instance: &str) {
        self.0
            .stop_instances()
            .instance_ids(instance)
            .send()
            .await
            .expect("stop");
    }

    /// Request a peering from `vpc` to `peer_vpc` (in `peer_account`/`peer_region`).
    pub async fn peer(
        &self,
        vpc: &str,
        peer_vpc: &str,
        peer_account: Option<&str>,
        peer_region: Option<&str>,
    ) -> String {
        let p = self
            .0
            .create_vpc_peering_connection()
            .vpc_id(vpc)
            .peer_vpc_id(peer_vpc)
            .set_peer_owner_id(peer_account.map(str::to_string))
            .set_peer_region(peer_region.map(str::to_string))
            .send()
            .await
            .expect("peering");
        p.vpc_peering_connection()
            .and_then(|p| p.vpc_peering_connection_id())
            .expect("pcx id")
            .to_string()
    }

    pub async fn accept(&self, pcx: &str) {
        self.0
            .accept_vpc_peering_connection()
            .vpc_peering_connection_id(pcx)
            .send()
            .await
            .expect("accept peering");
    }
}

/// An organization with accounts named `names`; returns their ids in order.
pub async fn organization(moto: &Moto, names: &[&str]) -> Vec<String> {
    let org = new_organization(moto).await;
    let mut ids = Vec::new();
    for n in names {
        ids.push(create_account(&org, n).await);
    }
    ids
}

/// Create the organization (all features) of moto's management account; returns
/// its client.
pub async fn new_organization(moto: &Moto) -> aws_sdk_organizations::Client {
    let org = aws_sdk_organizations::Client::new(&moto.root("us-east-1").await);
    org.create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .expect("organization");
    org
}

/// Create a member account named `name`; returns its id.
pub async fn create_account(org: &aws_sdk_organizations::Client, name: &str) -> String {
    let a = org
        .create_account()
        .account_name(name)
        .email(format!("{name}@example.org"))
        .send()
        .await
        .expect("account");
    a.create_account_status()
        .and_then(|s| s.account_id())
        .expect("account id")
        .to_string()
}

/// The read-only discovery role in `account`, trusting `principal` and
/// requiring `external_id`.
pub async fn discovery_role(
    moto: &Moto,
    account: &str,
    role: &str,
    principal: &str,
    external_id: &str,
) {
    let sdk = if account == MANAGEMENT {
        moto.root("us-east-1").await
    } else {
        moto.account(account, "us-east-1").await
    };
    let iam = aws_sdk_iam::Client::new(&sdk);
    let trust = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": principal},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": external_id}}
        }]
    });
    iam.create_role()
        .role_name(role)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .expect("role");
    let read = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["ec2:Describe*"], "Resource": "*"}]
    });
    iam.put_role_policy()
        .role_name(role)
        .policy_name("read")
        .policy_document(read.to_string())
        .send()
        .await
        .expect("role policy");
}

/// An IAM user in the management account that may list the organization and
/// assume `role` in every account except those in `denied`; returns its keys.
pub async fn discovery_user(moto: &Moto, role: &str, denied: &[&str]) -> Credentials {
    let iam = aws_sdk_iam::Client::new(&moto.root("us-east-1").await);
    iam.create_user()
        .user_name("scanfleet")
        .send()
        .await
        .expect("user");
    let mut statements = vec![
        serde_json::json!({"Effect": "Allow", "Action": ["organizations:ListAccounts", "sts:GetCallerIdentity"], "Resource": "*"}),
        serde_json::json!({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": format!("arn:aws:iam::*:role/{role}")}),
    ];
    for d in denied {
        statements.push(serde_json::json!({"Effect": "Deny", "Action": "sts:AssumeRole", "Resource": format!("arn:aws:iam::{d}:role/{role}")}));
    }
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": statements});
    iam.put_user_policy()
        .user_name("scanfleet")
        .policy_name("discovery")
        .policy_document(policy.to_string())
        .send()
        .await
        .expect("user policy");
    let k = iam
        .create_access_key()
        .user_name("scanfleet")
        .send()
        .await
        .expect("access key");
    let k = k.access_key().expect("key");
    Credentials::new(
        k.access_key_id(),
        k.secret_access_key(),
        None,
        None,
        "scanfleet-user",
    )
}
