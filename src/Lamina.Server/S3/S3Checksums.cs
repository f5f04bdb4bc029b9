using System.Buffers.Binary;
using System.IO.Hashing;
using System.Runtime.Intrinsics.X86;
using System.Security.Cryptography;

namespace Lamina.Server.S3;

/// <summary>
/// The additional checksums S3 accepts and reports (<c>x-amz-checksum-*</c>): CRC32, CRC32C, CRC64NVME, SHA1, SHA256,
/// each base64 of the big-endian digest. The current SDKs send one with every upload (botocore ≥ 1.36 and the JS SDK
/// v3: CRC32 by default, in an aws-chunked trailer) and check the one a GET returns.
/// </summary>
internal static class S3Checksums
{
    /// <summary>The algorithms, upper case as S3 names them (<c>ChecksumAlgorithm</c>), and their header names.</summary>
    public static readonly string[] Algorithms = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"];

    public static string HeaderName(string algorithm) => "x-amz-checksum-" + algorithm.ToLowerInvariant();

    /// <summary>The algorithm a header name such as <c>x-amz-checksum-crc32c</c> names, or null.</summary>
    public static string? FromHeaderName(string header)
    {
        const string prefix = "x-amz-checksum-";
        if (!header.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }
        var name = header[prefix.Length..].ToUpperInvariant();
        return Array.IndexOf(Algorithms, name) >= 0 ? name : null;
    }

    public static bool IsKnown(string algorithm) => Array.IndexOf(Algorithms, algorithm) >= 0;

    /// <summary>A running hash of one algorithm; <c>Finish</c> gives S3's base64 form.</summary>
    public static Hasher Create(string algorithm) => algorithm switch
    {
        "CRC32" => new NonCryptographic(new Crc32()),
        "CRC32C" => new Crc32CHasher(),
        "CRC64NVME" => new Crc64NvmeHasher(),
        "SHA1" => new Incremental(IncrementalHash.CreateHash(HashAlgorithmName.SHA1)),
        "SHA256" => new Incremental(IncrementalHash.CreateHash(HashAlgorithmName.SHA256)),
        _ => throw new ArgumentOutOfRangeException(nameof(algorithm), algorithm, "not an S3 checksum algorithm"),
    };

    /// <summary>The checksum of <paramref name="data"/> in one call.</summary>
    public static string Of(string algorithm, ReadOnlySpan<byte> data)
    {
        var hasher = Create(algorithm);
        hasher.Append(data);
        return hasher.Finish();
    }

    internal abstract class Hasher
    {
        public abstract void Append(ReadOnlySpan<byte> data);

        /// <summary>The raw big-endian digest.</summary>
        public abstract byte[] Digest();

        public string Finish() => Convert.ToBase64String(Digest());
    }

    private sealed class NonCryptographic(NonCryptographicHashAlgorithm hash) : Hasher
    {
        public override void Append(ReadOnlySpan<byte> data) => hash.Append(data);

        // System.IO.Hashing writes its CRCs little-endian; S3 wants the number big-endian.
        public override byte[] Digest()
        {
            var digest = hash.GetCurrentHash();
            Array.Reverse(digest);
            return digest;
        }
    }

    private sealed class Incremental(IncrementalHash hash) : Hasher
    {
        public override void Append(ReadOnlySpan<byte> data) => hash.AppendData(data);

        public override byte[] Digest() => hash.GetHashAndReset();
    }

    /// <summary>CRC-32C (Castagnoli, reflected 0x82F63B78): SSE4.2's crc32 instruction where there is one, else a table.</summary>
    internal sealed class Crc32CHasher : Hasher
    {
        private static readonly uint[] Table = BuildTable32(0x82F63B78u);
        private uint _crc = 0xFFFFFFFFu;

        public override void Append(ReadOnlySpan<byte> data)
        {
            var crc = _crc;
            if (Sse42.X64.IsSupported)
            {
                ulong wide = crc;
                while (data.Length >= 8)
                {
                    wide = Sse42.X64.Crc32(wide, BinaryPrimitives.ReadUInt64LittleEndian(data));
                    data = data[8..];
                }
                crc = (uint)wide;
                foreach (var b in data)
                {
                    crc = Sse42.Crc32(crc, b);
                }
            }
            else
            {
                foreach (var b in data)
                {
                    crc = Table[(crc ^ b) & 0xFF] ^ (crc >> 8);
                }
            }
            _crc = crc;
        }

        public override byte[] Digest()
        {
            var digest = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(digest, ~_crc);
            return digest;
        }
    }

    /// <summary>CRC-64/NVME (reflected 0x9A6C9329AC4BC9B5), slicing by 8.</summary>
    internal sealed class Crc64NvmeHasher : Hasher
    {
        private static readonly ulong[][] Tables = BuildTables64(0x9A6C9329AC4BC9B5ul);
        private ulong _crc = ulong.MaxValue;

        public override void Append(ReadOnlySpan<byte> data)
        {
            var crc = _crc;
            var t = Tables;
            while (data.Length >= 8)
            {
                crc ^= BinaryPrimitives.ReadUInt64LittleEndian(data);
                crc = t[7][crc & 0xFF] ^ t[6][(crc >> 8) & 0xFF] ^ t[5][(crc >> 16) & 0xFF] ^ t[4][(crc >> 24) & 0xFF]
                    ^ t[3][(crc >> 32) & 0xFF] ^ t[2][(crc >> 40) & 0xFF] ^ t[1][(crc >> 48) & 0xFF] ^ t[0][crc >> 56];
                data = data[8..];
            }
            foreach (var b in data)
            {
                crc = t[0][(crc ^ b) & 0xFF] ^ (crc >> 8);
            }
            _crc = crc;
        }

        public override byte[] Digest()
        {
            var digest = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(digest, ~_crc);
            return digest;
        }

        private static ulong[][] BuildTables64(ulong polynomial)
        {
            var tables = new ulong[8][];
            tables[0] = new ulong[256];
            for (var i = 0; i < 256; i++)
            {
                var crc = (ulong)i;
                for (var bit = 0; bit < 8; bit++)
                {
                    crc = (crc & 1) != 0 ? (crc >> 1) ^ polynomial : crc >> 1;
                }
                tables[0][i] = crc;
            }
            for (var k = 1; k < 8; k++)
            {
                tables[k] = new ulong[256];
                for (var i = 0; i < 256; i++)
                {
                    var previous = tables[k - 1][i];
                    tables[k][i] = tables[0][previous & 0xFF] ^ (previous >> 8);
                }
            }
            return tables;
        }
    }

    private static uint[] BuildTable32(uint polynomial)
    {
        var table = new uint[256];
        for (var i = 0u; i < 256; i++)
        {
            var crc = i;
            for (var bit = 0; bit < 8; bit++)
            {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ polynomial : crc >> 1;
            }
            table[i] = crc;
        }
        return table;
    }
}
