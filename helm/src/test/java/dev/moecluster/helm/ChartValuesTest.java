package dev.moecluster.helm;

import static dev.moecluster.helm.ChartDefaultValuesTest.COORDINATOR;
import static dev.moecluster.helm.ChartDefaultValuesTest.ROUTER;
import static dev.moecluster.helm.ChartDefaultValuesTest.WORKER;
import static dev.moecluster.helm.ChartDefaultValuesTest.WORKLOADS;
import static dev.moecluster.helm.RenderedObjects.flag;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.Volume;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.autoscaling.v2.HorizontalPodAutoscaler;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicy;
import io.fabric8.kubernetes.api.model.policy.v1.PodDisruptionBudget;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Single values switched with {@code --set}: each option renders what it promises, and bad values fail clearly. */
class ChartValuesTest {
    private final HelmChart chart = HelmChart.moeCluster();

    private RenderedObjects render(Map<String, Object> sets) {
        return RenderedObjects.parse(chart.template(null, sets));
    }

    @Test
    void gpuLimitsOnlyForTheCudaBackend() {
        var cuda = render(Map.of("workers.backend", "cuda", "workers.gpus", 2));
        assertThat(cuda.container(WORKER).getResources().getLimits()).containsEntry("nvidia.com/gpu", new Quantity("2"))
                .containsEntry("memory", new Quantity("4Gi"));
        assertThat(flag(cuda.container(WORKER), "--backend")).isEqualTo("cuda");

        var auto = render(Map.of("workers.backend", "auto"));
        assertThat(auto.container(WORKER).getResources().getLimits()).doesNotContainKey("nvidia.com/gpu");
        assertThat(flag(auto.container(WORKER), "--backend")).isEqualTo("auto");
    }

    @Test
    void aHostPathModelIsMountedEverywhere() {
        var objects = render(Map.of("model.hostPath", "/data/models", "model.dir", "qwen3-30b-a3b"));
        for (String workload : WORKLOADS) {
            assertThat(flag(objects.container(workload), "--model")).isEqualTo("/models/qwen3-30b-a3b");
            Volume model = objects.podTemplate(workload).getSpec().getVolumes().stream()
                    .filter(v -> v.getName().equals("model")).findFirst().orElseThrow();
            assertThat(model.getHostPath().getPath()).isEqualTo("/data/models");
            assertThat(model.getHostPath().getType()).isEqualTo("Directory");
        }
    }

    @Test
    void tlsAloneWiresTheSecretButNoToken() {
        var objects = render(Map.of("tls.enabled", true, "tls.secretName", "my-tls"));
        for (String workload : WORKLOADS) {
            assertThat(flag(objects.container(workload), "--tls-ca")).isEqualTo("/etc/moe/tls/ca.crt");
            assertThat(objects.podTemplate(workload).getSpec().getVolumes()).filteredOn(v -> v.getName().equals("tls"))
                    .singleElement().satisfies(v -> assertThat(v.getSecret().getSecretName()).isEqualTo("my-tls"));
        }
        assertThat(objects.container(ROUTER).getArgs()).doesNotContain("--auth-token-file");
    }

    /**
     * With csi-driver certificates each worker pod's own certificate names exactly the host it
     * advertises (what routers dial and coordinators bind its registration to); routers and
     * coordinators keep the shared Secret, whose CA the issuer signs with.
     */
    @Test
    void csiWorkerCertificatesNameEachWorkerPodAsItAdvertisesItself() {
        var objects = render(Map.of("tls.enabled", true, "tls.secretName", "my-tls",
                "tls.workerCertificates.source", "csi", "tls.workerCertificates.issuerName", "moe-ca",
                "tls.workerCertificates.issuerKind", "ClusterIssuer"));
        Volume tls = objects.podTemplate(WORKER).getSpec().getVolumes().stream()
                .filter(v -> v.getName().equals("tls")).findFirst().orElseThrow();
        assertThat(tls.getSecret()).isNull();
        assertThat(tls.getCsi().getDriver()).isEqualTo("csi.cert-manager.io");
        assertThat(tls.getCsi().getReadOnly()).isTrue();
        Map<String, String> attributes = tls.getCsi().getVolumeAttributes();
        assertThat(attributes)
                .containsEntry("csi.cert-manager.io/issuer-name", "moe-ca")
                .containsEntry("csi.cert-manager.io/issuer-kind", "ClusterIssuer")
                .containsEntry("csi.cert-manager.io/issuer-group", "cert-manager.io")
                .containsEntry("csi.cert-manager.io/key-encoding", "PKCS8")
                .containsEntry("csi.cert-manager.io/duration", "24h")
                .containsEntry("csi.cert-manager.io/fs-group", "65532");
        String advertised = flag(objects.container(WORKER), "--advertise");
        assertThat(advertised).startsWith("$(POD_NAME).");
        assertThat(attributes.get("csi.cert-manager.io/dns-names")).isEqualTo(advertised.replace("$(POD_NAME)", "${POD_NAME}"));
        assertThat(attributes.get("csi.cert-manager.io/key-usages").split(","))
                .contains("server auth", "client auth", "digital signature");
        assertThat(flag(objects.container(WORKER), "--tls-cert")).isEqualTo("/etc/moe/tls/tls.crt");
        assertThat(flag(objects.container(WORKER), "--tls-ca")).isEqualTo("/etc/moe/tls/ca.crt");
        for (String workload : new String[] {ROUTER, COORDINATOR}) {
            assertThat(objects.podTemplate(workload).getSpec().getVolumes()).filteredOn(v -> v.getName().equals("tls"))
                    .singleElement().satisfies(v -> assertThat(v.getSecret().getSecretName()).isEqualTo("my-tls"));
        }
    }

    @Test
    void csiWorkerCertificatesNeedAnIssuerAndAKnownSource() {
        assertThatThrownBy(() -> chart.template(null, Map.of("tls.enabled", true, "tls.secretName", "my-tls",
                "tls.workerCertificates.source", "csi")))
                .hasMessageContaining("tls.workerCertificates.source=csi needs tls.workerCertificates.issuerName");
        assertThatThrownBy(() -> chart.template(null, Map.of("tls.workerCertificates.source", "vault")))
                .hasMessageContaining("workerCertificates").hasMessageContaining("source");
    }

    /** The README's install line: the image the user built and pushed, at the chart's appVersion, in every pod. */
    @Test
    void theImageRepositoryTheUserPushedToIsWhatEveryPodRuns() {
        var objects = render(Map.of("image.repository", "registry.example.com/team/moe"));
        for (String workload : WORKLOADS) {
            assertThat(objects.container(workload).getImage()).as(workload).isEqualTo("registry.example.com/team/moe:0.1.0");
        }
        var tagged = render(Map.of("image.repository", "registry.example.com/team/moe", "image.tag", "dev-1"));
        assertThat(tagged.container(ROUTER).getImage()).isEqualTo("registry.example.com/team/moe:dev-1");
    }

    @Test
    void theRoutersHttpPortIsOneValueForFlagContainerAndServiceAndHttpsWithTls() {
        var objects = render(Map.of("router.ports.http", 8080, "tls.enabled", true, "tls.secretName", "my-tls"));
        assertThat(flag(objects.container(ROUTER), "--http-port")).isEqualTo("8080");
        assertThat(objects.container(ROUTER).getPorts()).filteredOn(p -> p.getName().equals("http"))
                .singleElement().satisfies(p -> assertThat(p.getContainerPort()).isEqualTo(8080));
        assertThat(objects.get(io.fabric8.kubernetes.api.model.Service.class, ROUTER).getSpec().getPorts())
                .filteredOn(p -> p.getName().equals("http")).singleElement().satisfies(p -> {
                    assertThat(p.getPort()).isEqualTo(8080);
                    assertThat(p.getTargetPort().getStrVal()).isEqualTo("http");
                    assertThat(p.getAppProtocol()).isEqualTo("https");
                });
        assertThatThrownBy(() -> render(Map.of("router.ports.http", 70000))).hasMessageContaining("http");
    }

    @Test
    void autoscalingReplacesTheRouterReplicaCount() {
        var objects = render(Map.of("router.autoscaling.enabled", true));
        assertThat(objects.get(HorizontalPodAutoscaler.class, ROUTER).getSpec().getMaxReplicas()).isEqualTo(10);
        assertThat(objects.get(Deployment.class, ROUTER).getSpec().getReplicas()).isNull();
    }

    @Test
    void serviceMonitorNetworkPolicyAndBudgetsFollowTheirSwitches() {
        var objects = render(Map.of("metrics.serviceMonitor.enabled", true, "networkPolicy.enabled", false,
                "workers.podDisruptionBudget.enabled", false));
        assertThat(objects.ofKind("ServiceMonitor")).hasSize(1);
        assertThat(objects.all(NetworkPolicy.class)).isEmpty();
        assertThat(objects.all(PodDisruptionBudget.class)).extracting(p -> p.getMetadata().getName())
                .containsExactlyInAnyOrder(COORDINATOR, ROUTER);
    }

    @Test
    void theReleaseNamesItsOwnHazelcastClusterUnlessTold() {
        var objects = render(Map.of("clusterName", "prod-moe"));
        assertThat(flag(objects.container(COORDINATOR), "--cluster-name")).isEqualTo("prod-moe");
    }

    @Test
    void logsAreTextUnlessJsonIsAsked() {
        for (String workload : WORKLOADS) {
            assertThat(render(Map.of()).container(workload).getEnv()).anySatisfy(e -> {
                assertThat(e.getName()).isEqualTo("MOE_LOG_FORMAT");
                assertThat(e.getValue()).isEqualTo("text");
            });
            assertThat(render(Map.of("logFormat", "json")).container(workload).getEnv())
                    .anySatisfy(e -> assertThat(e.getName() + "=" + e.getValue()).isEqualTo("MOE_LOG_FORMAT=json"));
        }
        assertThatThrownBy(() -> chart.template(null, Map.of("logFormat", "yaml"))).hasMessageContaining("logFormat");
    }

    @Test
    void longReleaseNamesStillGiveValidObjectNames() {
        var objects = RenderedObjects.parse(chart.template(null,
                Map.of("fullnameOverride", "a-very-long-release-name-for-a-production-moe-cluster-deployment",
                        "grafana.dashboard.enabled", true, "metrics.serviceMonitor.enabled", true,
                        "metrics.prometheusRule.enabled", true, "router.autoscaling.enabled", true)));
        assertThat(objects.all()).hasSize(16);
        assertThat(objects.all()).allSatisfy(o -> assertThat(o.getMetadata().getName())
                .hasSizeLessThanOrEqualTo(o.getKind().equals("StatefulSet") ? 52 : 63)
                .matches("[a-z0-9]([-a-z0-9]*[a-z0-9])?"));
    }

    @Test
    void aMisspeltValueIsRefusedInsteadOfIgnored() {
        assertThatThrownBy(() -> chart.template(null, Map.of("workers.replica", 8)))
                .hasMessageContaining("values don't meet the specifications of the schema")
                .hasMessageContaining("replica");
    }

    @Test
    void aValueOfTheWrongTypeIsRefused() {
        assertThatThrownBy(() -> chart.template(null, Map.of("router.service.type", "Ingress")))
                .hasMessageContaining("router.service.type");
        assertThatThrownBy(() -> chart.template(null, Map.of("workers.replicas", 0)))
                .hasMessageContaining("workers.replicas");
    }

    @Test
    void anUnknownBackendFailsRenderingWithTheChoices() {
        assertThatThrownBy(() -> chart.template(null, Map.of("workers.backend", "tpu")))
                .hasMessageContaining("workers.backend must be one of cpu, cuda or auto, got \"tpu\"");
    }

    @Test
    void tlsWithoutASecretFailsRendering() {
        assertThatThrownBy(() -> chart.template(null, Map.of("tls.enabled", true)))
                .hasMessageContaining("tls.enabled needs tls.secretName");
    }

    @Test
    void twoModelSourcesFailRendering() {
        assertThatThrownBy(() -> chart.template(null, Map.of("model.existingClaim", "models", "model.hostPath", "/data")))
                .hasMessageContaining("set at most one of model.existingClaim and model.hostPath");
    }

    @Test
    void moreExpertCopiesThanWorkersFailRendering() {
        assertThatThrownBy(() -> chart.template(null, Map.of("coordinator.minReplicas", 3)))
                .hasMessageContaining("coordinator.minReplicas (3) cannot exceed workers.replicas (2)");
    }

    @Test
    void securitySecretsAreMountedOnlyWhereTheyAreNeeded() {
        var objects = render(Map.of("tls.enabled", true, "tls.secretName", "my-tls",
                "security.placementSigningSecret", "moe-signing", "security.adminTokenSecret", "moe-admin",
                "security.adminReadToken", true, "security.dataPlaneTokenSecret", "moe-data-plane",
                "security.allowedClients[0]", "router", "security.allowedClients[1]", "CN=router-2",
                "security.controlTokenSecret", "moe-control"));
        var coordinator = objects.container(COORDINATOR);
        // the coordinators check both roles' tokens; each worker or router holds only its own
        assertThat(flag(coordinator, "--worker-token-file")).isEqualTo("/etc/moe/control/worker");
        assertThat(flag(coordinator, "--router-token-file")).isEqualTo("/etc/moe/control/router");
        assertThat(secretItems(objects, COORDINATOR, "control-tokens")).isEqualTo(Map.of("moe-control", java.util.List.of("worker", "router")));
        assertThat(flag(objects.container(WORKER), "--control-token-file")).isEqualTo("/etc/moe/control/worker");
        assertThat(secretItems(objects, WORKER, "control-tokens")).isEqualTo(Map.of("moe-control", java.util.List.of("worker")));
        assertThat(flag(objects.container(ROUTER), "--control-token-file")).isEqualTo("/etc/moe/control/router");
        assertThat(secretItems(objects, ROUTER, "control-tokens")).isEqualTo(Map.of("moe-control", java.util.List.of("router")));
        assertThat(flag(coordinator, "--signing-key")).isEqualTo("/etc/moe/signing/signing.pem");
        assertThat(flag(coordinator, "--admin-token-file")).isEqualTo("/etc/moe/admin/write");
        assertThat(flag(coordinator, "--admin-read-token-file")).isEqualTo("/etc/moe/admin/read");
        assertThat(coordinator.getArgs()).doesNotContain("--placement-public-key", "--data-plane-token-file");
        assertThat(secretItems(objects, COORDINATOR, "signing")).as("only the leader side holds the private key")
                .isEqualTo(Map.of("moe-signing", java.util.List.of("signing.pem")));
        assertThat(secretItems(objects, COORDINATOR, "admin-tokens")).isEqualTo(Map.of("moe-admin", java.util.List.of("write", "read")));
        assertThat(secretItems(objects, COORDINATOR, "data-plane-token")).isEmpty();
        for (String workload : new String[] {WORKER, ROUTER}) {
            var c = objects.container(workload);
            assertThat(flag(c, "--placement-public-key")).isEqualTo("/etc/moe/signing/public.pem");
            assertThat(flag(c, "--data-plane-token-file")).isEqualTo("/etc/moe/data-plane/token");
            assertThat(c.getArgs()).doesNotContain("--signing-key", "--admin-token-file");
            assertThat(secretItems(objects, workload, "signing")).isEqualTo(Map.of("moe-signing", java.util.List.of("public.pem")));
            assertThat(secretItems(objects, workload, "data-plane-token")).isEqualTo(Map.of("moe-data-plane", java.util.List.of("token")));
            assertThat(secretItems(objects, workload, "admin-tokens")).isEmpty();
            assertThat(c.getVolumeMounts()).filteredOn(m -> m.getName().equals("signing")).singleElement()
                    .satisfies(m -> assertThat(m.getMountPath()).isEqualTo("/etc/moe/signing"));
        }
        assertThat(flag(objects.container(WORKER), "--allowed-clients")).isEqualTo("router,CN=router-2");
        assertThat(objects.container(ROUTER).getArgs()).doesNotContain("--allowed-clients");
    }

    /** Secret name → item keys of the pod volume {@code volume} of {@code workload}; empty when it has none. */
    private static Map<String, java.util.List<String>> secretItems(RenderedObjects objects, String workload, String volume) {
        return objects.podTemplate(workload).getSpec().getVolumes().stream().filter(v -> v.getName().equals(volume))
                .collect(java.util.stream.Collectors.toMap(v -> v.getSecret().getSecretName(),
                        v -> v.getSecret().getItems().stream().map(i -> i.getKey()).toList()));
    }

    @Test
    void withoutSecurityValuesNoSecurityFlagsOrMounts() {
        var objects = render(Map.of());
        for (String workload : WORKLOADS) {
            assertThat(objects.container(workload).getArgs()).doesNotContain("--signing-key", "--placement-public-key",
                    "--admin-token-file", "--data-plane-token-file", "--allowed-clients", "--control-token-file",
                    "--worker-token-file", "--router-token-file");
            assertThat(objects.podTemplate(workload).getSpec().getVolumes()).extracting(Volume::getName)
                    .doesNotContain("signing", "admin-tokens", "data-plane-token", "control-tokens");
        }
    }

    @Test
    void moreAdminClientsCanBeLetIn() {
        var objects = render(Map.of("networkPolicy.adminFrom[0].namespaceSelector.matchLabels.team", "ops"));
        NetworkPolicy policy = objects.get(NetworkPolicy.class, COORDINATOR);
        assertThat(policy.getSpec().getIngress()).filteredOn(r -> r.getPorts().stream().anyMatch(p -> p.getPort().getIntVal() == 50071))
                .singleElement().satisfies(rule -> {
                    assertThat(rule.getFrom()).hasSize(2);
                    assertThat(rule.getFrom().get(1).getNamespaceSelector().getMatchLabels()).isEqualTo(Map.of("team", "ops"));
                });
    }

    @Test
    void aReadTokenWithoutAWriteTokenOrAnAllowListWithoutTlsFailsRendering() {
        assertThatThrownBy(() -> chart.template(null, Map.of("security.adminReadToken", true)))
                .hasMessageContaining("security.adminReadToken needs security.adminTokenSecret");
        assertThatThrownBy(() -> chart.template(null, Map.of("security.allowedClients[0]", "router")))
                .hasMessageContaining("security.allowedClients needs tls.enabled");
    }

    @Test
    void aGracePeriodShorterThanTheDrainFailsRendering() {
        assertThatThrownBy(() -> chart.template(null, Map.of("workers.terminationGracePeriodSeconds", 60)))
                .hasMessageContaining("workers.terminationGracePeriodSeconds must exceed workers.drainTimeoutSeconds");
    }
}
