package dev.apikeyportal.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

class WebhookSignatureTest {

  // The test vector of the Standard Webhooks specification and libraries (checked
  // against the Python standardwebhooks package the portal verifies with).
  private static final String SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

  @Test
  void itSignsTheStandardWebhooksTestVector() {
    String signature =
        WebhookSignature.sign(
            WebhookSignature.keyOf(SECRET),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330L,
            "{\"test\": 2432232314}".getBytes(StandardCharsets.UTF_8));

    assertEquals("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", signature);
  }

  @Test
  void itRefusesASecretWithoutThePrefix() {
    var e =
        assertThrows(
            IllegalArgumentException.class,
            () -> WebhookSignature.keyOf("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));

    assertFalse(e.getMessage().contains("MfKQ9r8G"));
  }

  @Test
  void itRefusesASecretThatIsNotBase64WithoutQuotingIt() {
    var e =
        assertThrows(
            IllegalArgumentException.class, () -> WebhookSignature.keyOf("whsec_not*base64!"));

    assertFalse(e.getMessage().contains("not*base64"));
  }

  @Test
  void itRefusesAnEmptyKey() {
    assertThrows(IllegalArgumentException.class, () -> WebhookSignature.keyOf("whsec_"));
  }
}
