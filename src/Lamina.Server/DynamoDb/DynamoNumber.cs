using System.Globalization;
using System.Numerics;
using System.Text;

namespace Lamina.Server.DynamoDb;

/// <summary>
/// A DynamoDB number (<c>N</c>): an exact decimal of up to 38 significant digits, magnitude from 1E-130 to below
/// 1E+126, as DynamoDB stores it. Not C#'s <c>decimal</c> (28 digits, a far smaller range) nor a double (inexact).
/// Held as <c>Coefficient × 10^Exponent</c> with no trailing zeros in the coefficient, so equal values have one form.
/// </summary>
internal readonly struct DynamoNumber : IEquatable<DynamoNumber>, IComparable<DynamoNumber>
{
    public const int MaxDigits = 38;
    private const int MaxScientificExponent = 125;
    private const int MinScientificExponent = -130;

    private DynamoNumber(BigInteger coefficient, int exponent)
    {
        Coefficient = coefficient;
        Exponent = exponent;
    }

    public BigInteger Coefficient { get; }
    public int Exponent { get; }
    public int Sign => Coefficient.Sign;

    public static DynamoNumber Zero => default;

    /// <summary>The digits of |Coefficient|, most significant first ("0" for zero).</summary>
    public string Digits => BigInteger.Abs(Coefficient).ToString(CultureInfo.InvariantCulture);

    /// <summary>The exponent of the number in scientific notation (d.ddd × 10^e); 0 for zero.</summary>
    public int ScientificExponent => Coefficient.IsZero ? 0 : Exponent + Digits.Length - 1;

    /// <summary>Parses DynamoDB's number syntax, checking its limits; the error is DynamoDB's ValidationException message.</summary>
    public static bool TryParse(string? text, out DynamoNumber number, out string? error)
    {
        number = default;
        error = null;
        if (!TryParseSyntax(text, out var coefficient, out var exponent))
        {
            error = "A value provided cannot be converted into a number";
            return false;
        }
        return TryCreate(coefficient, exponent, out number, out error);
    }

    public static DynamoNumber Parse(string text) =>
        TryParse(text, out var n, out var error) ? n : throw new FormatException(error);

    public static DynamoNumber FromInt64(long value) => Normalize(value, 0);

    /// <summary>Normalises and checks the limits (38 digits, the exponent range).</summary>
    public static bool TryCreate(BigInteger coefficient, int exponent, out DynamoNumber number, out string? error)
    {
        number = Normalize(coefficient, exponent);
        error = null;
        if (number.Coefficient.IsZero)
        {
            return true;
        }
        var digits = number.Digits.Length;
        if (digits > MaxDigits)
        {
            error = "Attempting to store more than 38 significant digits in a Number";
            return false;
        }
        var scientific = number.Exponent + digits - 1;
        if (scientific > MaxScientificExponent)
        {
            error = "Number overflow. Attempting to store a number with magnitude larger than supported range";
            return false;
        }
        if (scientific < MinScientificExponent)
        {
            error = "Number underflow. Attempting to store a number with magnitude smaller than supported range";
            return false;
        }
        return true;
    }

    private static DynamoNumber Normalize(BigInteger coefficient, int exponent)
    {
        if (coefficient.IsZero)
        {
            return default;
        }
        while (true)
        {
            var quotient = BigInteger.DivRem(coefficient, 10, out var remainder);
            if (!remainder.IsZero)
            {
                break;
            }
            coefficient = quotient;
            exponent++;
        }
        return new DynamoNumber(coefficient, exponent);
    }

    // [+-]? digits [. digits]? ([eE] [+-]? digits)? — at least one digit in the mantissa.
    private static bool TryParseSyntax(string? text, out BigInteger coefficient, out int exponent)
    {
        coefficient = default;
        exponent = 0;
        if (string.IsNullOrEmpty(text) || text.Length > 1024)
        {
            return false;
        }
        var i = 0;
        var negative = false;
        if (text[i] is '+' or '-')
        {
            negative = text[i] == '-';
            i++;
        }
        var digits = new StringBuilder(text.Length);
        var fraction = 0;
        var any = false;
        for (; i < text.Length && char.IsAsciiDigit(text[i]); i++)
        {
            digits.Append(text[i]);
            any = true;
        }
        if (i < text.Length && text[i] == '.')
        {
            i++;
            for (; i < text.Length && char.IsAsciiDigit(text[i]); i++)
            {
                digits.Append(text[i]);
                fraction++;
                any = true;
            }
        }
        if (!any)
        {
            return false;
        }
        long exp = 0;
        if (i < text.Length && text[i] is 'e' or 'E')
        {
            i++;
            var expNegative = false;
            if (i < text.Length && text[i] is '+' or '-')
            {
                expNegative = text[i] == '-';
                i++;
            }
            var start = i;
            for (; i < text.Length && char.IsAsciiDigit(text[i]); i++)
            {
                exp = Math.Min(exp * 10 + (text[i] - '0'), 1_000_000);
            }
            if (i == start)
            {
                return false;
            }
            exp = expNegative ? -exp : exp;
        }
        if (i != text.Length)
        {
            return false;
        }
        // Leading zeros carry no value; strip them so a long run of them cannot cost much.
        var mantissa = digits.ToString().TrimStart('0');
        coefficient = mantissa.Length == 0 ? BigInteger.Zero : BigInteger.Parse(mantissa, NumberStyles.None, CultureInfo.InvariantCulture);
        if (negative)
        {
            coefficient = -coefficient;
        }
        exponent = (int)Math.Clamp(exp - fraction, -2_000_000, 2_000_000);
        return true;
    }

    public bool TryAdd(DynamoNumber other, out DynamoNumber sum, out string? error)
    {
        if (Coefficient.IsZero)
        {
            (sum, error) = (other, null);
            return true;
        }
        if (other.Coefficient.IsZero)
        {
            (sum, error) = (this, null);
            return true;
        }
        var exponent = Math.Min(Exponent, other.Exponent);
        var a = Coefficient * BigInteger.Pow(10, Exponent - exponent);
        var b = other.Coefficient * BigInteger.Pow(10, other.Exponent - exponent);
        return TryCreate(a + b, exponent, out sum, out error);
    }

    public DynamoNumber Negate() => new(-Coefficient, Exponent);

    public int CompareTo(DynamoNumber other)
    {
        if (Sign != other.Sign)
        {
            return Sign.CompareTo(other.Sign);
        }
        if (Sign == 0)
        {
            return 0;
        }
        // Same sign: compare magnitudes by scientific exponent, then digit by digit.
        var magnitude = ScientificExponent.CompareTo(other.ScientificExponent);
        if (magnitude == 0)
        {
            magnitude = string.CompareOrdinal(Digits, other.Digits);
        }
        return Sign > 0 ? Math.Sign(magnitude) : -Math.Sign(magnitude);
    }

    public bool Equals(DynamoNumber other) => Coefficient == other.Coefficient && Exponent == other.Exponent;

    public override bool Equals(object? obj) => obj is DynamoNumber other && Equals(other);

    public override int GetHashCode() => HashCode.Combine(Coefficient, Exponent);

    public static bool operator ==(DynamoNumber a, DynamoNumber b) => a.Equals(b);
    public static bool operator !=(DynamoNumber a, DynamoNumber b) => !a.Equals(b);
    public static bool operator <(DynamoNumber a, DynamoNumber b) => a.CompareTo(b) < 0;
    public static bool operator >(DynamoNumber a, DynamoNumber b) => a.CompareTo(b) > 0;
    public static bool operator <=(DynamoNumber a, DynamoNumber b) => a.CompareTo(b) <= 0;
    public static bool operator >=(DynamoNumber a, DynamoNumber b) => a.CompareTo(b) >= 0;

    /// <summary>Plain notation, as DynamoDB returns numbers: no exponent, no trailing zeros ("100", "0.015", "-2.5").</summary>
    public override string ToString()
    {
        if (Coefficient.IsZero)
        {
            return "0";
        }
        var digits = Digits;
        var sign = Coefficient.Sign < 0 ? "-" : "";
        if (Exponent >= 0)
        {
            return sign + digits + new string('0', Exponent);
        }
        var point = digits.Length + Exponent; // digits before the decimal point
        return point > 0
            ? sign + digits[..point] + "." + digits[point..]
            : sign + "0." + new string('0', -point) + digits;
    }

    /// <summary>An integer value that fits a long (for TTL epochs and limits); null otherwise.</summary>
    public long? ToInt64()
    {
        if (Exponent < 0 || ScientificExponent > 18)
        {
            return null;
        }
        var value = Coefficient * BigInteger.Pow(10, Exponent);
        return value >= long.MinValue && value <= long.MaxValue ? (long)value : null;
    }

    /// <summary>The value truncated to whole seconds, for TTL attributes (which may be fractional); null when out of range.</summary>
    public long? TruncatedInt64()
    {
        if (Coefficient.IsZero)
        {
            return 0;
        }
        if (ScientificExponent > 18)
        {
            return null;
        }
        var value = Exponent >= 0 ? Coefficient * BigInteger.Pow(10, Exponent) : BigInteger.Divide(Coefficient, BigInteger.Pow(10, -Exponent));
        return (long)value;
    }

    /// <summary>
    /// Order-preserving encoding: byte-wise comparison of two encodings orders them as the numbers. Zero is 0x80;
    /// positives are 0x81, the scientific exponent (+ 0x8000, two bytes big-endian) and the digits as ASCII; negatives
    /// are 0x7F, then the exponent and digits complemented, then 0xFF so that a shorter digit string (a larger
    /// negative number) sorts after its extensions.
    /// </summary>
    public byte[] EncodeKey()
    {
        if (Coefficient.IsZero)
        {
            return [0x80];
        }
        var digits = Digits;
        var negative = Coefficient.Sign < 0;
        var bytes = new byte[3 + digits.Length + (negative ? 1 : 0)];
        var exponent = (ushort)(ScientificExponent + 0x8000);
        if (negative)
        {
            exponent = (ushort)~exponent;
        }
        bytes[0] = negative ? (byte)0x7F : (byte)0x81;
        bytes[1] = (byte)(exponent >> 8);
        bytes[2] = (byte)exponent;
        for (var i = 0; i < digits.Length; i++)
        {
            bytes[3 + i] = negative ? (byte)(0x69 - digits[i]) : (byte)digits[i];
        }
        if (negative)
        {
            bytes[^1] = 0xFF;
        }
        return bytes;
    }

    /// <summary>The number an <see cref="EncodeKey"/> encoding stands for.</summary>
    public static DynamoNumber DecodeKey(ReadOnlySpan<byte> key)
    {
        if (key.Length == 0 || key[0] == 0x80)
        {
            return default;
        }
        var negative = key[0] == 0x7F;
        var exponent = (ushort)((key[1] << 8) | key[2]);
        if (negative)
        {
            exponent = (ushort)~exponent;
        }
        var digitBytes = key[3..(negative ? key.Length - 1 : key.Length)];
        var digits = new char[digitBytes.Length];
        for (var i = 0; i < digitBytes.Length; i++)
        {
            digits[i] = negative ? (char)(0x69 - digitBytes[i]) : (char)digitBytes[i];
        }
        var coefficient = BigInteger.Parse(digits, NumberStyles.None, CultureInfo.InvariantCulture);
        var scientific = exponent - 0x8000;
        return new DynamoNumber(negative ? -coefficient : coefficient, scientific - digits.Length + 1);
    }
}
