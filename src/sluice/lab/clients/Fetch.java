// Lab HTTPS client on Java 17 java.net.http.HttpClient (JSSE):
// java Fetch.java --cafile CA [--gap S] [--http 1.1|2] URL OUT [URL OUT ...]
import java.io.FileInputStream;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

public class Fetch {
    public static void main(String[] args) throws Exception {
        String ca = null;
        double gap = 0;
        String version = "2";
        List<String[]> jobs = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--cafile" -> ca = args[++i];
                case "--gap" -> gap = Double.parseDouble(args[++i]);
                case "--http" -> version = args[++i];
                default -> { jobs.add(new String[] {args[i], args[i + 1]}); i++; }
            }
        }
        KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
        ks.load(null, null);
        try (InputStream in = new FileInputStream(ca)) {
            ks.setCertificateEntry("lab", CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ks);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);
        HttpClient client = HttpClient.newBuilder()
            .sslContext(ctx)
            .version(version.equals("1.1") ? HttpClient.Version.HTTP_1_1 : HttpClient.Version.HTTP_2)
            .connectTimeout(Duration.ofSeconds(10))
            .build();
        int failed = 0;
        for (int i = 0; i < jobs.size(); i++) {
            if (i > 0) Thread.sleep((long) (gap * 1000));
            String[] j = jobs.get(i);
            try {
                HttpResponse<Path> r = client.send(
                    HttpRequest.newBuilder(URI.create(j[0])).timeout(Duration.ofSeconds(20)).build(),
                    HttpResponse.BodyHandlers.ofFile(Path.of(j[1])));
                if (r.statusCode() != 200) {
                    failed++;
                    System.err.println(j[0] + ": status " + r.statusCode());
                }
            } catch (Exception e) {
                failed++;
                System.err.println(j[0] + ": " + e);
            }
        }
        System.exit(failed == 0 ? 0 : 1);
    }
}
