package dev.apikeyportal.keycloak;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.util.Base64;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/** Standard Webhooks signatures (https://www.standardwebhooks.com), scheme v1 (HMAC-SHA256). */
final class WebhookSignature {

  static final String SECRET_PREFIX = "whsec_";

  private WebhookSignature() {}

  /**
   * The signing key of a {@code whsec_<base64>} secret. The message never contains the secret, so
   * that it cannot reach a log line through an exception.
   */
  static byte[] keyOf(String secret) {
    if (secret == null || !secret.startsWith(SECRET_PREFIX)) {
      throw new IllegalArgumentException("the secret must be whsec_ followed by base64");
    }
    byte[] key;
    try {
      key = Base64.getDecoder().decode(secret.substring(SECRET_PREFIX.length()));
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("the part of the secret after whsec_ is not base64");
    }
    if (key.length == 0) {
      throw new IllegalArgumentException("the secret has no key after whsec_");
    }
    return key;
  }

  /** The {@code webhook-signature} header: {@code v1,<base64 HMAC-SHA256 of id.timestamp.body>}. */
  static String sign(byte[] key, String id, long timestamp, byte[] body) {
    try {
      Mac mac = Mac.getInstance("HmacSHA256");
      mac.init(new SecretKeySpec(key, "HmacSHA256"));
      mac.update((id + "." + timestamp + ".").getBytes(StandardCharsets.UTF_8));
      return "v1," + Base64.getEncoder().encodeToString(mac.doFinal(body));
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("HmacSHA256 is part of every JDK", e);
    }
  }
}
