// Signed packages: certificates generated in the test with the OpenSSL API (CA, leaf,
// self-signed, expired; RSA and ECDSA), and the real signed samples from the shared corpus
// when it is present (skipped otherwise).
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <filesystem>
#include <memory>

#include "package_test_util.h"
#include "vandra/ovf/package.h"

namespace vandra::ovf {
namespace {

using testing::TarMember;
using testing::TempDir;

struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertFree {
  void operator()(X509* x) const { X509_free(x); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;

Key ecKey() {
  return Key(EVP_EC_gen("P-256"));
}
Key rsaKey() {
  return Key(EVP_RSA_gen(2048));
}

// A certificate for @p cn, signed by @p issuer (self-signed when null), valid from
// @p from_days to @p to_days relative to now.
Cert makeCert(const std::string& cn, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key,
              long from_days, long to_days, bool ca) {
  Cert x(X509_new());
  X509_set_version(x.get(), 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), from_days * 86400);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), to_days * 86400);
  X509_set_pubkey(x.get(), key);
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : x.get(), x.get(), nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_basic_constraints,
                                            ca ? "critical,CA:TRUE" : "CA:FALSE");
  X509_add_ext(x.get(), ext, -1);
  X509_EXTENSION_free(ext);
  X509_sign(x.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256());
  return x;
}

std::string pem(X509* x) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, x);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

std::string signHex(const std::string& data, EVP_PKEY* key, const EVP_MD* md) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestSignInit(ctx, nullptr, md, nullptr, key);
  size_t len = 0;
  EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()),
                 data.size());
  std::string sig(len, '\0');
  EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                 reinterpret_cast<const unsigned char*>(data.data()), data.size());
  EVP_MD_CTX_free(ctx);
  sig.resize(len);
  std::string hex;
  static constexpr char kDigits[] = "0123456789abcdef";
  for (const char c : sig) {
    hex.push_back(kDigits[static_cast<unsigned char>(c) >> 4U]);
    hex.push_back(kDigits[static_cast<unsigned char>(c) & 0xFU]);
  }
  return hex;
}

bool hasProblem(const Package& p, ErrorCode code) {
  return std::any_of(p.problems.begin(), p.problems.end(),
                     [code](const Error& e) { return e.code == code; });
}

class Signed : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_key_ = ecKey();
    ca_ = makeCert("Vandra Test CA", ca_key_.get(), nullptr, nullptr, -10, 365, true);
    trust_ = dir_.write("ca.pem", pem(ca_.get()));
    mf_ = "SHA256(vm.ovf)= " + testing::sha256(testing::kDescriptor) + "\n" +
          std::string(40, ' ');  // padded, as ovftool does
  }

  // An OVA signed by @p key with @p chain PEM, signature line labelled @p label.
  Package open(EVP_PKEY* key, const std::string& chain, const std::string& label = "SHA256",
               const EVP_MD* md = EVP_sha256(), bool tamper = false) {
    const std::string cert = label + "(vm.mf)= " + signHex(mf_, key, md) + "\n" + chain;
    const std::string mf = tamper ? mf_ + "\n" : mf_;
    const std::string tar =
        testing::makeTar({{"vm.ovf", testing::kDescriptor}, {"vm.mf", mf}, {"vm.cert", cert}});
    OpenOptions o;
    o.trust_store = trust_;
    auto pkg = openPackageFromMemory(tar, "signed.ova", o);
    EXPECT_TRUE(pkg) << pkg.error().describe();
    return pkg ? *pkg : Package{};
  }

  TempDir dir_;
  Key ca_key_;
  Cert ca_;
  std::string trust_;
  std::string mf_;
};

TEST_F(Signed, TrustedEcdsaLeafWithChain) {
  Key key = ecKey();
  Cert leaf = makeCert("Signer", key.get(), ca_.get(), ca_key_.get(), -1, 30, false);
  Package p = open(key.get(), pem(leaf.get()) + pem(ca_.get()));
  EXPECT_EQ(p.signature.status, SignatureStatus::Trusted);
  EXPECT_TRUE(p.problems.empty()) << (p.problems.empty() ? "" : p.problems[0].describe());
  EXPECT_EQ(p.signature.subject, "CN=Signer");
  EXPECT_EQ(p.signature.issuer, "CN=Vandra Test CA");
  EXPECT_EQ(p.signature.not_after.size(), 20U);  // YYYY-MM-DDTHH:MM:SSZ
  EXPECT_EQ(p.signature.not_after.back(), 'Z');
}

TEST_F(Signed, TrustedRsaLeafLabelNamesSignatureDigest) {
  Key key = rsaKey();
  Cert leaf = makeCert("RSA Signer", key.get(), ca_.get(), ca_key_.get(), -1, 30, false);
  // As ovftool: SHA256 manifest, signature made with SHA1 and labelled SHA1.
  Package p = open(key.get(), pem(leaf.get()), "SHA1", EVP_sha1());
  EXPECT_EQ(p.signature.status, SignatureStatus::Trusted);
  EXPECT_EQ(p.signature.algorithm, DigestAlgorithm::Sha1);
  EXPECT_TRUE(p.problems.empty());
}

TEST_F(Signed, WrongLabelDoesNotVerify) {
  Key key = ecKey();
  Cert leaf = makeCert("Signer", key.get(), ca_.get(), ca_key_.get(), -1, 30, false);
  Package p = open(key.get(), pem(leaf.get()), "SHA512", EVP_sha256());
  EXPECT_EQ(p.signature.status, SignatureStatus::Invalid);
  EXPECT_TRUE(hasProblem(p, ErrorCode::SignatureInvalid));
}

TEST_F(Signed, TamperedManifestIsInvalid) {
  Key key = ecKey();
  Cert leaf = makeCert("Signer", key.get(), ca_.get(), ca_key_.get(), -1, 30, false);
  Package p = open(key.get(), pem(leaf.get()), "SHA256", EVP_sha256(), true);
  EXPECT_EQ(p.signature.status, SignatureStatus::Invalid);
  EXPECT_TRUE(hasProblem(p, ErrorCode::SignatureInvalid));
}

TEST_F(Signed, SelfSigned) {
  Key key = ecKey();
  Cert self = makeCert("Self", key.get(), nullptr, nullptr, -1, 30, true);
  Package p = open(key.get(), pem(self.get()));
  EXPECT_EQ(p.signature.status, SignatureStatus::SelfSigned);
  EXPECT_TRUE(hasProblem(p, ErrorCode::CertificateSelfSigned));
  EXPECT_FALSE(hasProblem(p, ErrorCode::SignatureInvalid));
}

TEST_F(Signed, UntrustedChain) {
  Key other_key = ecKey();
  Cert other_ca = makeCert("Other CA", other_key.get(), nullptr, nullptr, -10, 365, true);
  Key key = ecKey();
  Cert leaf = makeCert("Signer", key.get(), other_ca.get(), other_key.get(), -1, 30, false);
  Package p = open(key.get(), pem(leaf.get()) + pem(other_ca.get()));
  EXPECT_EQ(p.signature.status, SignatureStatus::Untrusted);
  EXPECT_TRUE(hasProblem(p, ErrorCode::CertificateUntrusted));
  EXPECT_FALSE(hasProblem(p, ErrorCode::CertificateSelfSigned));
}

TEST_F(Signed, Expired) {
  Key key = ecKey();
  Cert leaf = makeCert("Old Signer", key.get(), ca_.get(), ca_key_.get(), -30, -2, false);
  Package p = open(key.get(), pem(leaf.get()));
  EXPECT_EQ(p.signature.status, SignatureStatus::Expired);
  EXPECT_TRUE(hasProblem(p, ErrorCode::CertificateExpired));
  EXPECT_FALSE(hasProblem(p, ErrorCode::CertificateUntrusted));
}

TEST_F(Signed, LaxReportsAsWarnings) {
  Key key = ecKey();
  Cert self = makeCert("Self", key.get(), nullptr, nullptr, -1, 30, true);
  const std::string cert =
      "SHA256(vm.mf)= " + signHex(mf_, key.get(), EVP_sha256()) + "\n" + pem(self.get());
  OpenOptions o;
  o.lax = true;
  o.trust_store = trust_;
  auto p = openPackageFromMemory(
      testing::makeTar({{"vm.ovf", testing::kDescriptor}, {"vm.mf", mf_}, {"vm.cert", cert}}), "x",
      o);
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->problems.empty());
  EXPECT_EQ(p->signature.status, SignatureStatus::SelfSigned);
  EXPECT_FALSE(p->warnings.empty());
}

TEST_F(Signed, MalformedCertificateFiles) {
  Key key = ecKey();
  Cert leaf = makeCert("Signer", key.get(), ca_.get(), ca_key_.get(), -1, 30, false);
  const std::string good_line = "SHA256(vm.mf)= " + signHex(mf_, key.get(), EVP_sha256()) + "\n";
  for (const std::string& cert :
       {std::string("garbage"), good_line, "SHA256(vm.mf)= zz\n" + pem(leaf.get()),
        "SHA256(other.mf)= " + signHex(mf_, key.get(), EVP_sha256()) + "\n" + pem(leaf.get()),
        good_line + "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
        pem(leaf.get())}) {
    auto p = openPackageFromMemory(
        testing::makeTar({{"vm.ovf", testing::kDescriptor}, {"vm.mf", mf_}, {"vm.cert", cert}}),
        "x", {});
    ASSERT_TRUE(p);
    EXPECT_EQ(p->signature.status, SignatureStatus::Invalid) << cert;
    EXPECT_TRUE(hasProblem(*p, ErrorCode::SignatureInvalid)) << cert;
  }
}

TEST_F(Signed, CertificateWithoutManifest) {
  auto p = openPackageFromMemory(
      testing::makeTar({{"vm.ovf", testing::kDescriptor}, {"vm.cert", "SHA256(vm.mf)= 00"}}), "x",
      {});
  ASSERT_TRUE(p);
  EXPECT_TRUE(hasProblem(*p, ErrorCode::SignatureInvalid));
}

// Real samples (third-party, not in the repository) ---------------------------------------

std::string corpus(const std::string& sub) {
  return std::string(VANDRA_SOURCE_DIR) + "/../shared/ovf-corpus/" + sub;
}

#define VANDRA_NEED_CORPUS(dir)                      \
  if (!std::filesystem::exists(dir)) {               \
    GTEST_SKIP() << "corpus not present: " << (dir); \
  }

TEST(CorpusSigned, SelfSignedSha256LabelledSha1) {
  const auto dir = corpus("vmware/vbox-testkit-t4-signed-selfsigned-sha256");
  VANDRA_NEED_CORPUS(dir);
  auto p = openPackage(dir, {});
  ASSERT_TRUE(p) << p.error().describe();
  EXPECT_EQ(p->signature.status, SignatureStatus::SelfSigned);
  EXPECT_EQ(p->signature.algorithm, DigestAlgorithm::Sha1);
  EXPECT_TRUE(hasProblem(*p, ErrorCode::CertificateSelfSigned));
  EXPECT_TRUE(hasProblem(*p, ErrorCode::PackageMissingFile));  // disks are not in the corpus
  EXPECT_FALSE(hasProblem(*p, ErrorCode::SignatureInvalid));
  EXPECT_FALSE(hasProblem(*p, ErrorCode::ManifestMismatch));
}

TEST(CorpusSigned, DigicertSha1IsNotTrustedHere) {
  const auto dir = corpus("vmware/vbox-testkit-t5-signed-digicert-sha1");
  VANDRA_NEED_CORPUS(dir);
  auto p = openPackage(dir, {});
  ASSERT_TRUE(p) << p.error().describe();
  EXPECT_NE(p->signature.status, SignatureStatus::Trusted);
  EXPECT_NE(p->signature.status, SignatureStatus::Unsigned);
  EXPECT_TRUE(hasProblem(*p, ErrorCode::CertificateExpired) ||
              hasProblem(*p, ErrorCode::CertificateUntrusted) ||
              hasProblem(*p, ErrorCode::SignatureInvalid));
}

TEST(CorpusSigned, UntrustedChainAndOpenOvfRsa512) {
  for (const char* sub :
       {"vmware/vbox-testkit-t6-signed-untrusted-chain", "dmtf/open-ovf-signed-package"}) {
    const auto dir = corpus(sub);
    VANDRA_NEED_CORPUS(dir);
    auto p = openPackage(dir, {});
    ASSERT_TRUE(p) << p.error().describe();
    EXPECT_NE(p->signature.status, SignatureStatus::Trusted) << sub;
    EXPECT_NE(p->signature.status, SignatureStatus::Unsigned) << sub;
    EXPECT_FALSE(p->problems.empty()) << sub;
  }
}

TEST(CorpusManifest, CotInputPackageMatchesAndEmptyManifestWarns) {
  const auto cot = corpus("handwritten/cot-input-package");
  VANDRA_NEED_CORPUS(cot);
  auto p = openPackage(cot, {});
  ASSERT_TRUE(p) << p.error().describe();
  EXPECT_FALSE(hasProblem(*p, ErrorCode::ManifestMismatch));
  EXPECT_FALSE(hasProblem(*p, ErrorCode::ManifestInvalid));

  const auto t1 = corpus("vmware/vbox-testkit-t1-fusion-ovftool-4.0-no-disks");
  VANDRA_NEED_CORPUS(t1);
  p = openPackage(t1, {});
  ASSERT_TRUE(p) << p.error().describe();
  EXPECT_TRUE(p->problems.empty());
  ASSERT_TRUE(p->manifest);
  EXPECT_TRUE(p->manifest->empty());
  EXPECT_FALSE(p->warnings.empty());
}

}  // namespace
}  // namespace vandra::ovf
