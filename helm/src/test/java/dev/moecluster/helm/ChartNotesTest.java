package dev.moecluster.helm;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/** NOTES.txt, as {@code helm install} prints it: how to call the router and the Admin API. */
class ChartNotesTest {
    private final HelmChart chart = HelmChart.moeCluster();

    @Test
    void notesShowTheGenerateAndAdminCommands() {
        String notes = chart.installOutput(null);
        assertThat(notes).contains(
                "3 coordinators, 2 cpu workers, 2 routers",
                "kubectl -n moe port-forward svc/moe-moe-cluster-router 50051:50051",
                "moe generate --target 127.0.0.1:50051 --prompt \"Hello\"",
                "kubectl -n moe port-forward svc/moe-moe-cluster-router 8000:8000",
                "curl http://127.0.0.1:8000/v1/models\n",
                "admin status --target moe-moe-cluster-coordinator:50071");
        assertThat(notes).doesNotContain("--tls-ca", "--token-file");
    }

    @Test
    void productionNotesAddTheTlsAndTokenFlags() {
        String notes = chart.installOutput(chart.productionValues());
        assertThat(notes).contains(
                "8 cuda workers, 2-8 (autoscaled) routers",
                "moe generate --target 127.0.0.1:50051 --prompt \"Hello\" --tls-ca ca.crt --tls-cert client.crt "
                        + "--tls-key client.key --token-file token.txt",
                "curl https://127.0.0.1:8000/v1/models --cacert ca.crt --cert client.crt --key client.key "
                        + "-H \"Authorization: Bearer $(cat token.txt)\"",
                "kubectl -n moe get secret moe-router-token -o jsonpath='{.data.token}' | base64 -d > token.txt",
                "mounts Secret\n  moe-tls at /etc/moe/tls");
    }
}
