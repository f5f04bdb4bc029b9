using System.Numerics;
using Lamina.Server.DynamoDb;

namespace Lamina.Tests.DynamoDb;

/// <summary>DynamoDB numbers: exact decimals of 38 digits, DynamoDB's range and messages, plain notation, arithmetic.</summary>
public sealed class DynamoNumberTests
{
    [Theory]
    [InlineData("0", "0")]
    [InlineData("-0", "0")]
    [InlineData("00012.500", "12.5")]
    [InlineData("1e2", "100")]
    [InlineData("1.5E-3", "0.0015")]
    [InlineData("+7", "7")]
    [InlineData("-.5", "-0.5")]
    [InlineData("5.", "5")]
    [InlineData("12345678901234567890123456789012345678", "12345678901234567890123456789012345678")]
    [InlineData("0.00000000000000000000000000000000000000000001", "0.00000000000000000000000000000000000000000001")]
    [InlineData("1E-130", "0." + "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000" + "1")]
    public void Parse_Valid_IsCanonical(string text, string expected)
    {
        Assert.True(DynamoNumber.TryParse(text, out var number, out var error), error);
        Assert.Equal(expected, number.ToString());
    }

    [Theory]
    [InlineData("", "A value provided cannot be converted into a number")]
    [InlineData("abc", "A value provided cannot be converted into a number")]
    [InlineData("1e", "A value provided cannot be converted into a number")]
    [InlineData(" 1", "A value provided cannot be converted into a number")]
    [InlineData("0x10", "A value provided cannot be converted into a number")]
    [InlineData("NaN", "A value provided cannot be converted into a number")]
    [InlineData("Infinity", "A value provided cannot be converted into a number")]
    [InlineData("123456789012345678901234567890123456789", "Attempting to store more than 38 significant digits in a Number")]
    [InlineData("1E+126", "Number overflow. Attempting to store a number with magnitude larger than supported range")]
    [InlineData("1E-131", "Number underflow. Attempting to store a number with magnitude smaller than supported range")]
    [InlineData("1e999999999999", "Number overflow. Attempting to store a number with magnitude larger than supported range")]
    public void Parse_Invalid_HasDynamoDbMessage(string text, string message)
    {
        Assert.False(DynamoNumber.TryParse(text, out _, out var error));
        Assert.Equal(message, error);
    }

    [Fact]
    public void Parse_Largest_IsPlain()
    {
        Assert.True(DynamoNumber.TryParse("9.9999999999999999999999999999999999999E+125", out var n, out _));
        Assert.Equal(new string('9', 38) + new string('0', 88), n.ToString());
    }

    [Fact]
    public void Parse_TrailingZerosOfAnInteger_AreNotSignificant()
    {
        // 1 followed by 100 zeros has one significant digit: allowed.
        Assert.True(DynamoNumber.TryParse("1" + new string('0', 100), out var n, out _));
        Assert.Equal(100, n.Exponent);
        Assert.Equal(BigInteger.One, n.Coefficient);
    }

    [Fact]
    public void Add_IsExactBeyondDecimalAndDouble()
    {
        var a = DynamoNumber.Parse("0.1");
        var b = DynamoNumber.Parse("0.2");
        Assert.True(a.TryAdd(b, out var sum, out _));
        Assert.Equal("0.3", sum.ToString());
        var big = DynamoNumber.Parse("99999999999999999999999999999999999998");
        Assert.True(big.TryAdd(DynamoNumber.Parse("1"), out var max, out _));
        Assert.Equal("99999999999999999999999999999999999999", max.ToString());
        Assert.False(max.TryAdd(DynamoNumber.Parse("0.5"), out _, out var error));
        Assert.Equal("Attempting to store more than 38 significant digits in a Number", error);
        Assert.True(DynamoNumber.Parse("5").TryAdd(DynamoNumber.Parse("-5"), out var zero, out _));
        Assert.Equal("0", zero.ToString());
    }

    [Theory]
    [InlineData("1", "2", -1)]
    [InlineData("-1", "-2", 1)]
    [InlineData("10", "9.99", 1)]
    [InlineData("-10", "-9.99", -1)]
    [InlineData("0", "-0.0001", 1)]
    [InlineData("1.50", "1.5", 0)]
    [InlineData("1E+125", "9.9E+124", 1)]
    [InlineData("1E-130", "0", 1)]
    public void CompareTo_IsNumeric(string a, string b, int expected) =>
        Assert.Equal(expected, Math.Sign(DynamoNumber.Parse(a).CompareTo(DynamoNumber.Parse(b))));

    [Fact]
    public void TruncatedInt64_ReadsTtlEpochs()
    {
        Assert.Equal(1_700_000_000, DynamoNumber.Parse("1700000000.75").TruncatedInt64());
        Assert.Equal(1_700_000_000, DynamoNumber.Parse("1.7E9").TruncatedInt64());
        Assert.Null(DynamoNumber.Parse("1E+30").TruncatedInt64());
    }
}
