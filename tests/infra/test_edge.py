"""CloudFront in front of the private ALB (a VPC origin): wss:// and https:// on one host."""

from __future__ import annotations

import json
from typing import Any

from infra.constructs.edge import VPC_ORIGIN_REGIONS
from tests.infra.conftest import Synthesized

CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER = "216adef6-5c7f-47e4-b989-5492eafa07d3"


def _config(synthesized: Synthesized) -> dict[str, Any]:
    return dict(
        synthesized.only("AWS::CloudFront::Distribution")["Properties"]["DistributionConfig"]
    )


def test_nothing_is_cached_and_every_viewer_header_cookie_and_query_passes(
    synthesized: Synthesized,
) -> None:
    """The WebSocket upgrade, the token subprotocol and the AWSALB cookie reach the relay."""
    behavior = _config(synthesized)["DefaultCacheBehavior"]
    assert behavior["CachePolicyId"] == CACHING_DISABLED
    assert behavior["OriginRequestPolicyId"] == ALL_VIEWER
    assert set(behavior["AllowedMethods"]) >= {"GET", "POST", "OPTIONS"}
    assert behavior["ViewerProtocolPolicy"] == "https-only"


def _vpc_origin(synthesized: Synthesized) -> tuple[dict[str, Any], dict[str, Any]]:
    """The distribution's one origin and the VPC origin resource it names."""
    (origin,) = _config(synthesized)["Origins"]
    assert "CustomOriginConfig" not in origin
    assert not origin.get("OriginCustomHeaders")
    vpc_origin_id = origin["VpcOriginConfig"]["VpcOriginId"]["Fn::GetAtt"][0]
    return origin, synthesized.resources[vpc_origin_id]["Properties"]["VpcOriginEndpointConfig"]


def test_origin_is_the_internal_alb_through_a_vpc_origin(synthesized: Synthesized) -> None:
    """CloudFront reaches the ALB over its private VPC connection: no public origin, no header."""
    _, endpoint = _vpc_origin(synthesized)
    balancer_id = next(iter(synthesized.of_type("AWS::ElasticLoadBalancingV2::LoadBalancer")))
    assert endpoint["Arn"] == {"Ref": balancer_id}
    assert endpoint["OriginProtocolPolicy"] == "http-only"
    assert endpoint["HTTPPort"] == 80


def test_deploy_stops_early_in_a_region_without_vpc_origins(synthesized: Synthesized) -> None:
    """A Region where the private origin cannot exist fails before anything is created."""
    rules = synthesized.template.to_json()["Rules"]
    (rule,) = [r for r in rules.values() if "VPC origins" in json.dumps(r)]
    (assertion,) = rule["Assertions"]
    regions, region = assertion["Assert"]["Fn::Contains"]
    assert region == {"Ref": "AWS::Region"}
    assert set(regions) == set(VPC_ORIGIN_REGIONS)
    assert {"us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1"} <= set(regions)


def test_outputs_give_wss_relay_and_https_page_urls(synthesized: Synthesized) -> None:
    """After deploy the user reads wss://<cloudfront>/v1/realtime and https://<cloudfront>/."""
    outputs = synthesized.template.to_json()["Outputs"]
    relay = json.dumps(outputs["RelayUrl"]["Value"])
    page = json.dumps(outputs["AgentPageUrl"]["Value"])
    assert relay.startswith('{"Fn::Join": ["", ["wss://", {"Fn::GetAtt": ["Edge')
    assert relay.endswith('"/v1/realtime"]]}')
    assert page.startswith('{"Fn::Join": ["", ["https://", {"Fn::GetAtt": ["Edge')
    assert {"OpenAIKeySecretArn", "RelayTokenSecretArn"} <= set(outputs)
    description = outputs["AgentPageUrl"]["Description"]
    assert "#token=" in description
    assert "?token=" not in description


def test_custom_domain_gets_a_certificate_modern_tls_and_alias_records(custom: Synthesized) -> None:
    """With -c domain_name=..., the URLs use it, TLS 1.2+ only, and DNS points at CloudFront."""
    config = _config(custom)
    assert config["Aliases"] == ["voice.example.com"]
    certificate = config["ViewerCertificate"]
    assert certificate["MinimumProtocolVersion"] == "TLSv1.2_2021"
    assert certificate["SslSupportMethod"] == "sni-only"
    custom.template.has_resource_properties(
        "AWS::CertificateManager::Certificate",
        {"DomainName": "voice.example.com", "ValidationMethod": "DNS"},
    )
    records = sorted(
        (r["Properties"]["Name"], r["Properties"]["Type"])
        for r in custom.of_type("AWS::Route53::RecordSet").values()
    )
    assert records == [
        ("origin.voice.example.com.", "A"),
        ("voice.example.com.", "A"),
        ("voice.example.com.", "AAAA"),
    ]
    rules = custom.template.to_json()["Rules"]
    assert any("us-east-1" in json.dumps(rule) for rule in rules.values())
    outputs = custom.template.to_json()["Outputs"]
    assert outputs["RelayUrl"]["Value"] == "wss://voice.example.com/v1/realtime"
    assert outputs["AgentPageUrl"]["Value"] == "https://voice.example.com/"


def test_custom_domain_encrypts_the_origin_leg_too(custom: Synthesized) -> None:
    """With a domain, CloudFront reaches the ALB over TLS 1.2+ at origin.<domain>, port 443."""
    origin, endpoint = _vpc_origin(custom)
    assert origin["DomainName"] == "origin.voice.example.com"
    assert endpoint["OriginProtocolPolicy"] == "https-only"
    assert endpoint["HTTPSPort"] == 443
    assert endpoint["OriginSSLProtocols"] == ["TLSv1.2"]
    listener = custom.only("AWS::ElasticLoadBalancingV2::Listener")["Properties"]
    assert (listener["Port"], listener["Protocol"]) == (443, "HTTPS")
    assert listener["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    # CloudFront checks the origin certificate against the Host header it forwards (the
    # viewer's domain) or, without one, the origin name: the certificate names both.
    custom.template.has_resource_properties(
        "AWS::CertificateManager::Certificate",
        {
            "DomainName": "origin.voice.example.com",
            "SubjectAlternativeNames": ["voice.example.com"],
            "ValidationMethod": "DNS",
        },
    )
    balancer = custom.only("AWS::ElasticLoadBalancingV2::LoadBalancer")
    group = custom.resources[balancer["Properties"]["SecurityGroups"][0]["Fn::GetAtt"][0]]
    ports = [(r["FromPort"], r["ToPort"]) for r in group["Properties"]["SecurityGroupIngress"]]
    assert ports == [(443, 443)]


def test_outputs_name_the_relay_service_to_roll_after_filling_the_key(
    synthesized: Synthesized,
) -> None:
    """The README's force-new-deployment step reads the cluster and service from outputs."""
    outputs = synthesized.template.to_json()["Outputs"]
    assert "Ref" in outputs["RelayClusterName"]["Value"]
    assert "Fn::GetAtt" in outputs["RelayServiceName"]["Value"]
