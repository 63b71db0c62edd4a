package dev.moecluster.helm;

import static dev.moecluster.helm.ChartDefaultValuesTest.COORDINATOR;
import static dev.moecluster.helm.ChartDefaultValuesTest.ROUTER;
import static dev.moecluster.helm.ChartDefaultValuesTest.WORKER;
import static dev.moecluster.helm.ChartDefaultValuesTest.WORKLOADS;
import static dev.moecluster.helm.RenderedObjects.flag;
import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.Service;
import io.fabric8.kubernetes.api.model.Volume;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.apps.StatefulSet;
import io.fabric8.kubernetes.api.model.autoscaling.v2.HorizontalPodAutoscaler;
import java.nio.file.Files;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** {@code helm template -f values-production.yaml}: GPU workers, a PVC model, TLS, a token, HPA and monitoring. */
class ChartProductionValuesTest {
    private final HelmChart chart = HelmChart.moeCluster();
    private final RenderedObjects objects = RenderedObjects.parse(chart.template(chart.productionValues(), Map.of()));

    @Test
    void rendersEveryOptionalObject() {
        assertThat(objects.all()).extracting(o -> o.getKind()).containsOnly("StatefulSet", "Deployment", "Service",
                "PodDisruptionBudget", "NetworkPolicy", "HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule", "ConfigMap");
        assertThat(objects.all(HorizontalPodAutoscaler.class)).hasSize(1);
        assertThat(objects.ofKind("ServiceMonitor")).hasSize(1);
        assertThat(objects.ofKind("PrometheusRule")).singleElement().satisfies(rule ->
                assertThat(rule.getMetadata().getLabels()).containsEntry("release", "kube-prometheus-stack"));
        assertThat(objects.all(ConfigMap.class)).hasSize(1);
    }

    @Test
    void cudaWorkersEachAskForAGpuOnGpuNodes() {
        StatefulSet workers = objects.get(StatefulSet.class, WORKER);
        assertThat(workers.getSpec().getReplicas()).isEqualTo(8);
        Container worker = objects.container(WORKER);
        assertThat(flag(worker, "--backend")).isEqualTo("cuda");
        assertThat(flag(worker, "--memory-budget")).isEqualTo("70GiB");
        assertThat(worker.getResources().getLimits()).containsEntry("nvidia.com/gpu", new Quantity("1"))
                .containsEntry("memory", new Quantity("32Gi"));
        assertThat(workers.getSpec().getTemplate().getSpec().getNodeSelector()).containsEntry("nvidia.com/gpu.present", "true");
        assertThat(workers.getSpec().getTemplate().getSpec().getTolerations())
                .anySatisfy(t -> assertThat(t.getKey()).isEqualTo("nvidia.com/gpu"));
        // only workers compute experts
        for (String workload : List.of(COORDINATOR, ROUTER)) {
            assertThat(objects.container(workload).getResources().getLimits()).doesNotContainKey("nvidia.com/gpu");
        }
        Container coordinator = objects.container(COORDINATOR);
        assertThat(flag(coordinator, "--expected-workers")).isEqualTo("8");
        assertThat(flag(coordinator, "--min-replicas")).isEqualTo("2");
    }

    @Test
    void everyComponentLoadsTheModelFromTheClaim() {
        for (String workload : WORKLOADS) {
            Container c = objects.container(workload);
            assertThat(flag(c, "--model")).isEqualTo("/models/mixtral-8x7b");
            assertThat(c.getArgs()).doesNotContain("--arch");
            assertThat(c.getVolumeMounts()).anySatisfy(m -> {
                assertThat(m.getName()).isEqualTo("model");
                assertThat(m.getMountPath()).isEqualTo("/models");
                assertThat(m.getReadOnly()).isTrue();
            });
            assertThat(volume(workload, "model").getPersistentVolumeClaim().getClaimName()).isEqualTo("moe-models");
        }
    }

    @Test
    void everyComponentGetsTheTlsSecretAndFlags() {
        for (String workload : WORKLOADS) {
            Container c = objects.container(workload);
            assertThat(flag(c, "--tls-cert")).isEqualTo("/etc/moe/tls/tls.crt");
            assertThat(flag(c, "--tls-key")).isEqualTo("/etc/moe/tls/tls.key");
            assertThat(flag(c, "--tls-ca")).isEqualTo("/etc/moe/tls/ca.crt");
            assertThat(c.getVolumeMounts()).anySatisfy(m -> {
                assertThat(m.getName()).isEqualTo("tls");
                assertThat(m.getMountPath()).isEqualTo("/etc/moe/tls");
                assertThat(m.getReadOnly()).isTrue();
            });
            assertThat(volume(workload, "tls").getSecret().getSecretName()).isEqualTo("moe-tls");
            // probes stay on the plaintext health port
            assertThat(c.getReadinessProbe().getGrpc().getPort()).isEqualTo(Integer.parseInt(flag(c, "--health-port")));
        }
    }

    @Test
    void onlyTheRouterChecksTheBearerToken() {
        Container router = objects.container(ROUTER);
        assertThat(flag(router, "--auth-token-file")).isEqualTo("/etc/moe/auth/token");
        assertThat(router.getVolumeMounts()).anySatisfy(m -> assertThat(m.getMountPath()).isEqualTo("/etc/moe/auth"));
        assertThat(volume(ROUTER, "auth").getSecret().getSecretName()).isEqualTo("moe-router-token");
        for (String workload : List.of(COORDINATOR, WORKER)) {
            assertThat(objects.container(workload).getArgs()).doesNotContain("--auth-token-file");
        }
    }

    @Test
    void theHpaScalesTheRouterDeploymentOnCpu() {
        HorizontalPodAutoscaler hpa = objects.get(HorizontalPodAutoscaler.class, ROUTER);
        assertThat(hpa.getSpec().getScaleTargetRef().getKind()).isEqualTo("Deployment");
        assertThat(hpa.getSpec().getScaleTargetRef().getApiVersion()).isEqualTo("apps/v1");
        assertThat(hpa.getSpec().getScaleTargetRef().getName()).isEqualTo(ROUTER);
        assertThat(hpa.getSpec().getMinReplicas()).isEqualTo(2);
        assertThat(hpa.getSpec().getMaxReplicas()).isEqualTo(8);
        assertThat(hpa.getSpec().getMetrics()).singleElement().satisfies(m -> {
            assertThat(m.getResource().getName()).isEqualTo("cpu");
            assertThat(m.getResource().getTarget().getAverageUtilization()).isEqualTo(70);
        });
        // the HPA owns the replica count; a fixed one would fight it on every upgrade
        assertThat(objects.get(Deployment.class, ROUTER).getSpec().getReplicas()).isNull();
    }

    @Test
    void theServiceMonitorScrapesTheMetricsPortOfTheReleasesServices() {
        GenericKubernetesResource monitor = (GenericKubernetesResource) objects.ofKind("ServiceMonitor").getFirst();
        assertThat(monitor.getMetadata().getLabels()).containsEntry("release", "kube-prometheus-stack");
        Map<String, String> selector = monitor.get("spec", "selector", "matchLabels");
        assertThat(selector).isEqualTo(Map.of("app.kubernetes.io/name", "moe-cluster", "app.kubernetes.io/instance", "moe"));
        List<Map<String, Object>> endpoints = monitor.get("spec", "endpoints");
        assertThat(endpoints).singleElement().satisfies(e -> {
            assertThat(e).containsEntry("port", "metrics").containsEntry("path", "/metrics");
        });
        // the selected Services that carry a metrics port: one per component
        assertThat(objects.all(Service.class))
                .filteredOn(s -> s.getMetadata().getLabels().entrySet().containsAll(selector.entrySet()))
                .filteredOn(s -> s.getSpec().getPorts().stream().anyMatch(p -> p.getName().equals("metrics")))
                .extracting(s -> s.getMetadata().getName())
                .containsExactlyInAnyOrder(COORDINATOR, WORKER, ROUTER);
    }

    @Test
    void theDashboardShipsAsAGrafanaSidecarConfigMap() throws Exception {
        ConfigMap dashboard = objects.get(ConfigMap.class, "moe-moe-cluster-dashboard");
        assertThat(dashboard.getMetadata().getLabels()).containsEntry("grafana_dashboard", "1");
        String json = Files.readString(chart.dir().resolve("files/grafana/moe-cluster.json"));
        assertThat(dashboard.getData()).containsOnlyKeys("moe-cluster.json");
        assertThat(dashboard.getData().get("moe-cluster.json")).isEqualTo(json.strip());
    }

    private Volume volume(String workload, String name) {
        return objects.podTemplate(workload).getSpec().getVolumes().stream().filter(v -> v.getName().equals(name))
                .findFirst().orElseThrow(() -> new AssertionError(workload + " has no volume " + name));
    }
}
